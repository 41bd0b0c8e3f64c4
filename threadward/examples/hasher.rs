//! A parallel file hasher: every file under a directory hashed on a pool,
//! through a `JobSet`, with a progress bar. The read blocks (it is inside
//! `cx.blocking`, so the pool runs another job meanwhile); the hashing
//! computes (outside it, so it counts against the pool's CPUs).
//!
//! `cargo run --release -p threadward --example hasher -- <dir>`

use std::io;
use std::path::{Path, PathBuf};

use threadward::{JobSet, Pool};

/// FNV-1a, 64 bits: enough to tell files apart in an example.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every regular file under `dir` (symbolic links are not followed).
fn files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What hashing a tree found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// Files hashed.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The files' hashes combined, independent of the order they finished.
    pub digest: u64,
    /// Files that could not be read, with the error.
    pub failed: Vec<(PathBuf, String)>,
}

/// Hashes every file under `dir` on `pool`; `progress` is called once per
/// file as it finishes.
pub fn hash_tree(pool: &Pool, dir: &Path, mut progress: impl FnMut()) -> io::Result<Digest> {
    let mut set = JobSet::new();
    for path in files(dir)? {
        set.spawn(pool, move |cx| {
            // Only the read blocks: wrap just that.
            let bytes = cx.blocking(|| std::fs::read(&path));
            (path, bytes.map(|b| (b.len() as u64, fnv1a(&b))))
        })
        .map_err(io::Error::other)?;
    }
    let mut d = Digest::default();
    while let Some((_, done)) = set.join_next() {
        progress();
        let (path, r) = done.map_err(io::Error::other)?;
        match r {
            Ok((len, h)) => {
                d.files += 1;
                d.bytes += len;
                // A sum of per-file hashes mixed with their paths: the same
                // tree gives the same digest whatever order jobs end in.
                d.digest = d
                    .digest
                    .wrapping_add(h ^ fnv1a(path.to_string_lossy().as_bytes()));
            }
            Err(e) => d.failed.push((path, e.to_string())),
        }
    }
    Ok(d)
}

#[allow(dead_code)] // the test includes this file for `hash_tree`
fn main() -> io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let pool = Pool::builder()
        .name("hasher")
        .build()
        .map_err(io::Error::other)?;
    let total = files(&dir)?.len() as u64;
    let bar = indicatif::ProgressBar::new(total);
    let d = hash_tree(&pool, &dir, || bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "{} files, {} bytes, digest {:016x}, {} unreadable",
        d.files,
        d.bytes,
        d.digest,
        d.failed.len()
    );
    let s = pool.stats();
    println!(
        "pool: peak {} threads, {} compensated",
        s.peak, s.compensated
    );
    Ok(())
}
