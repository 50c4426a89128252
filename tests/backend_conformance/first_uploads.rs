//! First-upload cases: a genome being uploaded is readable by its storage id as far as its
//! writer reports, before it has a hash, and (where genomes are local files) by a worker on the
//! master's host reading those files itself; a second copy of a genome stored meanwhile is a spare,
//! deleted once its job ends while the kept copy still reads; an upload that is discarded
//! leaves nothing to read or list.

use bytes::Bytes;
use gridwatch::backend::{JobStatus, StoredKind};

use super::fixtures::*;

/// Bases of a few blocks (both backends keep about 4 Mi bases a block) with N runs, lower case
/// and other IUPAC codes, from a fixed sequence so a failure repeats.
fn genome(len: usize) -> Vec<u8> {
    let mut state = 99u64;
    let mut bases: Vec<u8> = (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            b"ACGT"[(state >> 62) as usize]
        })
        .collect();
    bases[1000..3000].fill(b'N');
    for base in &mut bases[4_194_000..4_195_000] {
        base.make_ascii_lowercase();
    }
    bases[len - 10..len - 7].copy_from_slice(b"RyK");
    bases
}

/// Creates an uploading job `id`, as a submit does before its upload.
async fn uploading_job(s: &Subject, id: &str) {
    s.store
        .create_job(&job_record(id, 1.0))
        .await
        .expect("create the job");
}

/// Stores `bases` as job `job`'s upload; returns its storage id.
async fn upload(s: &Subject, bases: &[u8], job: &str) -> String {
    let mut writer = s.genomes.begin_genome(StoredKind::Genome).await.unwrap();
    for piece in bases.chunks(1 << 20) {
        writer.append(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    writer.flush().await.unwrap();
    let storage = writer.storage().to_string();
    writer
        .commit(&crate::support::genome_record(bases), job)
        .await
        .unwrap();
    storage
}

pub async fn a_range_reads_by_storage_id_while_its_upload_is_in_progress(s: &Subject) {
    let bases = genome(9_000_123);
    let mut writer = s.genomes.begin_genome(StoredKind::Genome).await.unwrap();
    let storage = writer.storage().to_string();
    assert!(
        gridwatch::backend::genome::is_genome_hash(&storage),
        "{storage}"
    );
    let mut appended = 0usize;
    let mut seen_partial = false;
    for piece in bases.chunks(700_001) {
        writer.append(Bytes::copy_from_slice(piece)).await.unwrap();
        appended += piece.len();
        let readable = writer.readable() as usize;
        assert!(readable <= appended, "{readable} readable of {appended}");
        if readable == 0 {
            continue;
        }
        seen_partial |= readable < appended;
        // The last readable bases, across the block boundary before them when there is one.
        for (offset, len) in [
            (0, readable),
            (readable - 1, 1),
            (readable.saturating_sub(5000), 5000.min(readable)),
        ] {
            let read = s
                .genomes
                .read_stored(&storage, offset as u64, len as u64)
                .await
                .unwrap_or_else(|err| panic!("bases {offset}+{len} of {readable} readable: {err}"));
            assert!(
                read[..] == bases[offset..offset + len],
                "bases {offset}+{len}"
            );
            if let Some(files) = &s.files {
                assert!(s.genomes.writing_in_files(&storage));
                let read = files
                    .read(&storage, offset as u64, len as u64)
                    .await
                    .unwrap_or_else(|err| panic!("bases {offset}+{len} in place: {err}"));
                assert!(
                    read[..] == bases[offset..offset + len],
                    "bases {offset}+{len} in place"
                );
            }
        }
        if readable < appended {
            let past = s.genomes.read_stored(&storage, readable as u64, 1).await;
            assert!(past.is_err(), "a base not yet readable: {past:?}");
            if let Some(files) = &s.files {
                let past = files.read(&storage, readable as u64, 1).await;
                assert!(past.is_err(), "a base not yet written: {past:?}");
            }
        }
    }
    assert!(
        seen_partial,
        "blocks became readable while bases were still held"
    );
    assert!(
        (writer.readable() as usize) < bases.len(),
        "the last block waits for the flush"
    );
    writer.flush().await.unwrap();
    assert_eq!(writer.readable() as usize, bases.len());
    let tail = s
        .genomes
        .read_stored(&storage, 8_999_000, 1123)
        .await
        .unwrap();
    assert!(tail[..] == bases[8_999_000..], "the tail after the flush");
    assert!(
        s.genomes
            .use_genome(&crate::support::genome_record(&bases).hash, "j0")
            .await
            .unwrap()
            .is_none(),
        "nothing is stored under the hash before the commit"
    );
    uploading_job(s, "j1").await;
    writer
        .commit(&crate::support::genome_record(&bases), "j1")
        .await
        .unwrap();
    let stored = s
        .genomes
        .use_genome(&crate::support::genome_record(&bases).hash, "j1")
        .await
        .unwrap();
    assert_eq!(stored.expect("stored after the commit").storage, storage);
    let read = s
        .genomes
        .read_stored(&storage, 4_193_000, 3000)
        .await
        .unwrap();
    assert!(read[..] == bases[4_193_000..4_196_000]);
    let read = s
        .genomes
        .read_genome(&crate::support::genome_record(&bases).hash, 0, 9_000_123)
        .await
        .unwrap();
    assert!(read[..] == bases[..], "the whole genome by its hash");
    if let Some(files) = &s.files {
        assert!(!s.genomes.writing_in_files(&storage));
        assert!(s.genomes.in_files(&storage).await.unwrap());
        let read = files.read(&storage, 0, 9_000_123).await.unwrap();
        assert!(read[..] == bases[..], "the whole genome in place");
    }
}

pub async fn a_spare_copy_is_deleted_once_its_job_ends_and_the_kept_copy_still_reads(s: &Subject) {
    let bases = genome(5_000_000);
    let hash = crate::support::genome_record(&bases).hash;
    uploading_job(s, "first").await;
    uploading_job(s, "second").await;
    let kept = upload(s, &bases, "first").await;
    let spare = upload(s, &bases, "second").await;
    assert_ne!(kept, spare);
    let listed = s.genomes.genomes().await.unwrap();
    assert_eq!(listed.len(), 1, "one genome: {listed:?}");
    assert_eq!(listed[0].storage, kept, "the first copy is the genome's");
    // The spare serves its job's tasks until the job ends.
    let read = s
        .genomes
        .read_stored(&spare, 4_194_300, 1000)
        .await
        .unwrap();
    assert!(read[..] == bases[4_194_300..4_195_300]);
    assert!(
        s.genomes.sweep_spares().await.unwrap().is_empty(),
        "its job runs"
    );
    s.store
        .set_status("second", JobStatus::Cancelled, Some("cancelled"))
        .await
        .unwrap();
    assert_eq!(s.genomes.sweep_spares().await.unwrap(), vec![spare.clone()]);
    assert!(
        s.genomes.read_stored(&spare, 0, 10).await.is_err(),
        "the spare is gone"
    );
    assert!(
        s.genomes.sweep_spares().await.unwrap().is_empty(),
        "swept once"
    );
    let read = s.genomes.read_stored(&kept, 0, 5_000_000).await.unwrap();
    assert!(read[..] == bases[..], "the kept copy reads whole");
    let read = s.genomes.read_genome(&hash, 4_999_990, 10).await.unwrap();
    assert!(read[..] == bases[4_999_990..]);
}

pub async fn a_discarded_upload_leaves_nothing(s: &Subject) {
    let bases = genome(6_000_000);
    let mut writer = s.genomes.begin_genome(StoredKind::Genome).await.unwrap();
    let storage = writer.storage().to_string();
    writer.append(Bytes::copy_from_slice(&bases)).await.unwrap();
    assert!(writer.readable() > 0, "a whole block is readable");
    assert!(s.genomes.read_stored(&storage, 0, 100).await.is_ok());
    writer.discard().await;
    assert!(
        s.genomes.read_stored(&storage, 0, 100).await.is_err(),
        "nothing reads"
    );
    assert!(
        s.genomes.genomes().await.unwrap().is_empty(),
        "nothing is listed"
    );
    assert!(s.genomes.sweep_spares().await.unwrap().is_empty());
}
