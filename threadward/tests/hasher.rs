//! The file hasher example: every file of a tree hashed once, the same
//! digest whatever order jobs end in, progress once per file, unreadable
//! files reported.

#[path = "../examples/hasher.rs"]
mod hasher;

mod common;

use common::{bounded, SEC};

#[test]
fn the_hasher_hashes_every_file_once_with_a_stable_digest() {
    bounded(60 * SEC, || {
        let dir = std::env::temp_dir().join(format!("tw-hasher-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        let mut bytes = 0;
        for i in 0..300u64 {
            let sub = ["", "sub", "sub/deeper"][(i % 3) as usize];
            let body = vec![i as u8; (i * 37 % 4096) as usize];
            bytes += body.len() as u64;
            std::fs::write(dir.join(sub).join(format!("f{i}")), body).unwrap();
        }
        let pool = threadward::Pool::builder()
            .name("hash-test")
            .build()
            .unwrap();
        let mut ticks = 0;
        let a = hasher::hash_tree(&pool, &dir, || ticks += 1).unwrap();
        assert_eq!((a.files, a.bytes, ticks), (300, bytes, 300));
        assert!(a.failed.is_empty());
        let b = hasher::hash_tree(&pool, &dir, || {}).unwrap();
        assert_eq!(a, b, "the digest does not depend on the order jobs end");
        std::fs::write(dir.join("f0"), b"changed").unwrap();
        let c = hasher::hash_tree(&pool, &dir, || {}).unwrap();
        assert_ne!(a.digest, c.digest);
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
