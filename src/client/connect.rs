//! A client's connection to the master: connect, `hello`, then request/reply. Also the error
//! type of every grid client command, with its exit code (2 for errors the user can fix).

use gridwatch::protocol::{
    Connection, Dial, ErrorCode, Greeting, Message, ProtocolError, RequestError, Requester, Role,
    ServerRole, Stream, TlsArgs, TlsError, TokenArgs, TokenError,
};
use thiserror::Error;

/// How often a client retries reaching a master that is not listening yet.
const CONNECT_ATTEMPTS: u32 = 5;

/// Where the master is and how to introduce ourselves; flattened into each client command.
#[derive(Clone, Debug, clap::Args)]
pub struct MasterAddr {
    /// The master's protocol address (HOST:PORT). MASTER_HOST / MASTER_PORT are honoured too.
    #[arg(long, env = "GRIDWATCH_MASTER", value_parser = host_port)]
    pub master: Option<String>,
    /// The cluster token, when the cluster has one.
    #[command(flatten)]
    pub auth: TokenArgs,
    /// TLS towards the master, when it serves TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl MasterAddr {
    /// `--master`, else `MASTER_HOST:MASTER_PORT`, else 127.0.0.1:5000.
    pub fn address(&self) -> String {
        self.master
            .clone()
            .unwrap_or_else(gridwatch::protocol::default_master_address)
    }
}

/// Checks a `HOST:PORT` flag, so a pasted dashboard URL is named as the mistake rather than
/// failing later as an unresolvable host.
pub fn host_port(value: &str) -> Result<String, String> {
    if let Some((scheme, _)) = value.split_once("://") {
        return Err(format!(
            "wants HOST:PORT, not a URL: drop the `{scheme}://` (the grid's protocol port, 5000 by \
             default, is not the HTTP port of the dashboard)"
        ));
    }
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(value.to_string())
        }
        _ => Err("wants HOST:PORT, e.g. 127.0.0.1:5000".to_string()),
    }
}

/// Why a client command failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Bad arguments or input the user can fix.
    #[error("{0}")]
    Usage(String),
    /// The master could not be reached.
    #[error("cannot reach the {role} at {addr}: {reason} (is `gridwatch {role}` or `gridwatch up` running? see --{role})")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// The socket error.
        reason: String,
        /// What was expected there: `master` or `collector`.
        role: &'static str,
    },
    /// The master refused the request.
    #[error("{message}")]
    Refused {
        /// The master's error code.
        code: ErrorCode,
        /// The master's explanation.
        message: String,
    },
    /// The connection broke or the master answered out of protocol.
    #[error("connection to the master failed: {0}")]
    Protocol(#[from] ProtocolError),
    /// The job ended without completing.
    #[error("{0}")]
    JobFailed(String),
    /// Writing output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// A command task followed to its end did not succeed: its exit status becomes the
    /// command's, as a shell reports a command.
    #[error("{message}")]
    TaskEnded {
        /// How it ended.
        message: String,
        /// The exit code to leave with.
        code: i32,
    },
}

impl ClientError {
    /// Whether the master may answer if asked again shortly: it is unreachable or restarting,
    /// the connection broke, or its backend failed for now.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::Protocol(_) => true,
            ClientError::Refused { code, .. } => {
                matches!(
                    code,
                    ErrorCode::Internal | ErrorCode::Busy | ErrorCode::Timeout
                )
            }
            _ => false,
        }
    }

    /// Process exit code: 2 for errors the user can fix, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Usage(_) => 2,
            ClientError::Refused {
                code:
                    ErrorCode::BadPattern
                    | ErrorCode::BadInput
                    | ErrorCode::BadMessage
                    | ErrorCode::UploadTooLarge
                    | ErrorCode::UploadIncomplete
                    | ErrorCode::RateLimited
                    | ErrorCode::NoSuchJob
                    | ErrorCode::JobNotReady
                    | ErrorCode::Unauthorized
                    | ErrorCode::IdInUse
                    | ErrorCode::VersionMismatch,
                ..
            } => 2,
            ClientError::TaskEnded { code, .. } => *code,
            _ => 1,
        }
    }
}

/// The frame length a client reads when an HTTP server answers its hello: `HTTP` as a big-endian
/// `u32` (1213486160).
const HTTP_AS_FRAME_LENGTH: usize = u32::from_be_bytes(*b"HTTP") as usize;

/// Names the mistake when `address` answered like an HTTP server rather than a grid port.
pub fn http_port_mistake(address: &str, err: &RequestError) -> Option<ClientError> {
    match err {
        RequestError::Protocol(ProtocolError::FrameTooLarge { size, .. })
            if *size == HTTP_AS_FRAME_LENGTH =>
        {
            Some(ClientError::Usage(format!(
                "{address} is an HTTP port; --master wants the protocol port (5000 by default)"
            )))
        }
        _ => None,
    }
}

/// An open, greeted connection to the master, and where it leads (to reconnect).
pub struct MasterClient {
    requester: Requester,
    addr: MasterAddr,
}

impl From<RequestError> for ClientError {
    fn from(err: RequestError) -> Self {
        match err {
            RequestError::Unreachable { address, reason } => ClientError::Unreachable {
                addr: address,
                reason,
                role: "master",
            },
            RequestError::Tls { address, reason } => ClientError::Usage(format!(
                "cannot connect to the master at {address}: {reason}"
            )),
            RequestError::Refused { code, message } => ClientError::Refused { code, message },
            RequestError::ResultRefused { message, .. } => ClientError::Refused {
                code: gridwatch::protocol::ErrorCode::ResultRefused,
                message,
            },
            RequestError::Protocol(err) => ClientError::Protocol(err),
        }
    }
}

impl From<TokenError> for ClientError {
    fn from(err: TokenError) -> Self {
        ClientError::Usage(err.to_string())
    }
}

impl From<TlsError> for ClientError {
    fn from(err: TlsError) -> Self {
        ClientError::Usage(err.to_string())
    }
}

impl MasterClient {
    /// Connects (retrying briefly while the master starts) and says hello.
    pub async fn connect(addr: &MasterAddr) -> Result<Self, ClientError> {
        let dial = Dial {
            attempts: CONNECT_ATTEMPTS,
            tls: addr.tls.client()?,
            ..Dial::default()
        };
        let greeting = Greeting::new(Role::Client).with_token(addr.auth.resolve()?);
        let address = addr.address();
        let requester = Requester::connect(&address, &greeting, &dial)
            .await
            .map_err(|err| http_port_mistake(&address, &err).unwrap_or_else(|| err.into()))?;
        if let Some(role) = requester.server_role().filter(|r| *r != ServerRole::Master) {
            return Err(not_the_master(&address, role));
        }
        Ok(Self {
            requester,
            addr: addr.clone(),
        })
    }

    /// Replaces the connection with a new one to the same master (after it restarted).
    pub async fn reconnect(&mut self) -> Result<(), ClientError> {
        *self = MasterClient::connect(&self.addr).await?;
        Ok(())
    }

    /// Sends a request and returns the reply; an `error` reply becomes `ClientError::Refused`.
    pub async fn request(&mut self, message: &Message) -> Result<Message, ClientError> {
        Ok(self.requester.request(message).await?)
    }

    /// Reads the next reply; an `error` reply becomes `ClientError::Refused`.
    pub async fn reply(&mut self) -> Result<Message, ClientError> {
        Ok(self.requester.reply().await?)
    }

    /// The underlying connection (for streaming uploads).
    pub fn connection(&mut self) -> &mut Connection<Stream> {
        self.requester.connection()
    }
}

/// A client that reached another gridwatch server where it expected the master.
pub fn not_the_master(address: &str, role: ServerRole) -> ClientError {
    let answers = match role {
        ServerRole::Collector => {
            "it takes the agents' reports and answers `gridwatch workers --collector` and \
             `gridwatch alerts --collector`"
        }
        ServerRole::Agent => "it takes one worker's heartbeats",
        ServerRole::Master => "it answers as a master",
    };
    ClientError::Usage(format!(
        "{address} is a gridwatch {}, not the master ({answers}): give the master's address \
         (--master HOST:PORT or GRIDWATCH_MASTER; `gridwatch up` prints it as \"master listening on\")",
        role.as_str()
    ))
}

/// An out-of-protocol reply.
pub fn unexpected(reply: &Message) -> ClientError {
    ClientError::Protocol(ProtocolError::Decode {
        code: ErrorCode::UnexpectedMessage,
        message: format!("unexpected reply from the master: {reply:?}"),
    })
}

/// Bytes per upload frame: large enough for few syscalls, far below the frame limit.
const UPLOAD_FRAME: usize = 1024 * 1024;

/// Frames read ahead of the one being sent.
const READ_AHEAD: usize = 2;

/// Sends exactly `file_size` bytes of `file` as data frames, telling `uploaded` how far it got.
/// A thread of its own reads the file into a few buffers that go round, so the disk read runs
/// beside the sends, and each byte is copied out of the page cache once.
pub async fn stream_file(
    client: &mut MasterClient,
    file: std::fs::File,
    file_size: u64,
    path: &std::path::Path,
    uploaded: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<(), ClientError> {
    let (full, mut filled) = tokio::sync::mpsc::channel(READ_AHEAD);
    let (emptied, empty) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = tokio::task::spawn_blocking(move || read_frames(file, file_size, &full, &empty));
    let mut sent = 0u64;
    let conn = client.connection();
    uploaded(0, file_size);
    while let Some(frame) = filled.recv().await {
        let frame: Vec<u8> = frame.map_err(|e| {
            let reason = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    format!("file shrank while uploading ({sent} of {file_size} bytes)")
                }
                _ => e.to_string(),
            };
            ClientError::Usage(format!("{}: {reason}", path.display()))
        })?;
        conn.send_frame(&frame).await?;
        sent += frame.len() as u64;
        uploaded(sent, file_size);
        let _ = emptied.send(frame);
    }
    reader
        .await
        .map_err(|e| ClientError::Usage(format!("reading {} stopped: {e}", path.display())))?;
    conn.flush().await?;
    Ok(())
}

/// The reading half of [`stream_file`]: reads `size` bytes in frames into the buffers handed
/// back on `empty` (or new ones) and passes them on `full`. Stops early when the
/// sender is gone (the upload failed); a file shorter than `size` ends with `UnexpectedEof`.
fn read_frames(
    file: std::fs::File,
    size: u64,
    full: &tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    empty: &std::sync::mpsc::Receiver<Vec<u8>>,
) {
    use std::io::Read;
    let mut left = size;
    while left > 0 {
        let mut frame = empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(UPLOAD_FRAME));
        frame.clear();
        let want = left.min(UPLOAD_FRAME as u64);
        let read = match (&file).take(want).read_to_end(&mut frame) {
            Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(read) => Ok(read),
            Err(err) => Err(err),
        };
        let piece = read.map(|read| {
            left -= read as u64;
            frame
        });
        let failed = piece.is_err();
        if full.blocking_send(piece).is_err() || failed {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs [`read_frames`] over `content` claimed to be `size` bytes long, handing every frame
    /// back for reuse; returns the frames' lengths, the buffer addresses, whether it ended short,
    /// and the bytes of every frame in order.
    fn read_all(content: &[u8], size: u64) -> (Vec<usize>, Vec<usize>, bool, Vec<u8>) {
        let path = std::env::temp_dir().join(format!(
            "gridwatch-read-frames-{}-{size}",
            std::process::id()
        ));
        std::fs::write(&path, content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let (full, mut filled) = tokio::sync::mpsc::channel(READ_AHEAD);
        let (emptied, empty) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || read_frames(file, size, &full, &empty));
        let (mut lengths, mut addresses, mut short) = (Vec::new(), Vec::new(), false);
        let mut bytes = Vec::new();
        while let Some(frame) = filled.blocking_recv() {
            match frame {
                Ok(frame) => {
                    lengths.push(frame.len());
                    addresses.push(frame.as_ptr() as usize);
                    bytes.extend_from_slice(&frame);
                    // The reader may be done already; then the buffer is simply dropped.
                    let _ = emptied.send(frame);
                }
                Err(err) => short = err.kind() == std::io::ErrorKind::UnexpectedEof,
            }
        }
        reader.join().unwrap();
        std::fs::remove_file(&path).unwrap();
        (lengths, addresses, short, bytes)
    }

    #[test]
    fn a_file_is_read_whole_in_whole_frames_into_a_few_reused_buffers() {
        let content: Vec<u8> = (0..8 * UPLOAD_FRAME + 1000)
            .map(|i| b"ACGT\n"[(i * 7 + i / 11) % 5])
            .collect();
        let (lengths, addresses, short, bytes) = read_all(&content, content.len() as u64);
        let mut expected = vec![UPLOAD_FRAME; 8];
        expected.push(1000);
        assert_eq!(lengths, expected);
        assert!(!short);
        assert!(
            bytes == content,
            "the frames hold the file's bytes in order"
        );
        let distinct: std::collections::BTreeSet<_> = addresses.iter().collect();
        assert!(
            distinct.len() <= READ_AHEAD + 2,
            "{} buffers for {} frames",
            distinct.len(),
            addresses.len()
        );
    }

    #[test]
    fn a_file_shorter_than_announced_ends_in_an_error_after_what_it_holds() {
        let content = vec![b'A'; UPLOAD_FRAME + 10];
        let (lengths, _, short, bytes) = read_all(&content, content.len() as u64 + 5);
        assert_eq!(lengths, [UPLOAD_FRAME, 10]);
        assert!(short, "the missing bytes are reported");
        assert!(bytes == content);
    }
}
