//! A command job's input files as the client sends them: each is named by its base name and
//! the BLAKE3 of its bytes, and uploaded only when the master does not hold that hash already
//! (`put_input`), so a file used by many jobs crosses the network once.

use std::path::{Path, PathBuf};

use super::connect::{unexpected, ClientError, MasterClient};
use gridwatch::jobs::command::{check_inputs, InputFile};
use gridwatch::protocol::Message;

/// Names, sizes and hashes the files; refuses a file that is missing, not a regular file, has a
/// name that is not UTF-8, or shares its base name with another.
pub fn describe(paths: &[PathBuf]) -> Result<Vec<InputFile>, ClientError> {
    let inputs = paths
        .iter()
        .map(|path| describe_one(path))
        .collect::<Result<Vec<_>, _>>()?;
    check_inputs(&inputs).map_err(|e| ClientError::Usage(format!("--input: {e}")))?;
    Ok(inputs)
}

fn describe_one(path: &Path) -> Result<InputFile, ClientError> {
    let shown = path.display();
    let fail = |e: std::io::Error| ClientError::Usage(format!("--input {shown}: {e}"));
    let meta = std::fs::metadata(path).map_err(fail)?;
    if !meta.is_file() {
        return Err(ClientError::Usage(format!(
            "--input {shown}: not a regular file"
        )));
    }
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| {
            ClientError::Usage(format!(
                "--input {shown}: give a file whose name is UTF-8 text"
            ))
        })?
        .to_string();
    let hash = super::genomes::file_hash(path).map_err(fail)?;
    Ok(InputFile {
        name,
        hash,
        size: meta.len(),
    })
}

/// Stores each file on the master for job `job_id`, uploading only those it does not hold;
/// returns the inputs as the job's spec names them.
pub async fn upload_inputs(
    client: &mut MasterClient,
    job_id: &str,
    paths: &[PathBuf],
) -> Result<Vec<InputFile>, ClientError> {
    let owned = paths.to_vec();
    let inputs = tokio::task::spawn_blocking(move || describe(&owned))
        .await
        .map_err(|e| ClientError::Usage(format!("hashing the inputs stopped: {e}")))??;
    for (input, path) in inputs.iter().zip(paths) {
        let announce = Message::PutInput {
            job_id: job_id.to_string(),
            hash: input.hash.clone(),
            size: input.size,
        };
        let reply = match client.request(&announce).await? {
            Message::Ready { .. } => {
                let file = std::fs::File::open(path)
                    .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
                super::connect::stream_file(client, file, input.size, path, &mut |_, _| {}).await?;
                client.reply().await?
            }
            other => other,
        };
        match reply {
            Message::InputStored { hash, uploaded } if hash == input.hash => {
                tracing::debug!(input = %input.name, %hash, uploaded, "input stored on the master");
            }
            other => return Err(unexpected(&other)),
        }
    }
    Ok(inputs)
}
