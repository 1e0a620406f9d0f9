//! A data directory belongs to one cluster, node and layout, and to one process at a time
//! (issue 10, defect 2: a changed `--id`, `--peers`, `--cores` or `--shards`, or two
//! processes on one directory, silently started empty replicas).

use std::path::PathBuf;

use treesync_actors::storage::identity::{Identity, IdentityError};

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("treesync-identity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // a leftover of an earlier run, if any
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

fn node(node_id: u64) -> Identity {
    Identity {
        cluster_id: 0xabc,
        node_id,
        cores: 2,
        shards: 8,
    }
}

#[test]
fn a_directory_of_another_node_cluster_or_layout_is_refused_naming_both() {
    let dir = dir("mismatch");
    drop(node(1).claim(&dir).expect("an empty directory is claimed"));
    drop(node(1).claim(&dir).expect("the same identity starts again"));
    let others = [
        node(2),
        Identity {
            cluster_id: 0xdef,
            ..node(1)
        },
        Identity {
            cores: 4,
            ..node(1)
        },
        Identity {
            shards: 16,
            ..node(1)
        },
    ];
    for other in others {
        match other.claim(&dir) {
            Err(e @ IdentityError::Mismatch { .. }) => {
                let said = e.to_string();
                assert!(said.contains(&node(1).to_string()), "{said}");
                assert!(said.contains(&other.to_string()), "{said}");
            }
            result => panic!("{other} got {result:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir); // best-effort cleanup
}

#[test]
fn two_servers_cannot_share_one_directory() {
    let dir = dir("lock");
    let held = node(1).claim(&dir).expect("claimed");
    assert!(matches!(
        node(1).claim(&dir),
        Err(IdentityError::InUse { .. })
    ));
    drop(held);
    node(1)
        .claim(&dir)
        .expect("free again once the holder is gone");
    let _ = std::fs::remove_dir_all(&dir); // best-effort cleanup
}

#[test]
fn wal_files_without_an_identity_are_refused() {
    let dir = dir("unidentified");
    std::fs::write(dir.join("core-0.wal"), b"someone's log").expect("a stray WAL");
    assert!(matches!(
        node(1).claim(&dir),
        Err(IdentityError::Unidentified { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir); // best-effort cleanup
}
