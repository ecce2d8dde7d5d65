//! Nothing acknowledged is ever lost: a SQLite database on a disk that fills
//! up answers 503 for the writes it cannot commit, keeps every write it did
//! acknowledge, reports itself unhealthy, and recovers when space returns.

use std::{io::Write, path::Path, process::Command};

use sea_orm::{Database, EntityTrait};
use serde_json::json;

use crate::process::{ServerProcess, send};

/// A 2 MiB tmpfs of the test's own, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` where mounting is not allowed (not root); CI runs as root.
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to mount a tmpfs (run as root)"
            );
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk, then gives back `spare` bytes.
    fn fill_leaving(&self, spare: u64) {
        let mut filler = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while filler.write_all(&block).is_ok() {}
        let _ = filler.flush();
        let written = filler.metadata().unwrap().len();
        filler.set_len(written.saturating_sub(spare)).unwrap();
    }

    fn free_everything(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503_loses_no_acknowledged_write_and_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let database_url = format!("sqlite://{}/todo.db?mode=rwc", disk.path().display());
    let token = crate::helpers::token_for("alice");
    let server = ServerProcess::start(&database_url, &[]).await;
    let http = reqwest::Client::new();
    let create = |n: usize| {
        send(
            http.post(server.url("/api/alice/tasks"))
                .bearer_auth(&token)
                .json(&json!({"title": format!("task {n}"), "description": "x".repeat(900)})),
        )
    };
    let health = || send(http.get(server.url("/health")));
    assert_eq!(health().await.status, 200);

    // A create appends a dozen 4 KiB pages to the WAL (the task, its index
    // entries, its count and its search-index segment): room for a few.
    disk.fill_leaving(192 * 1024);
    let mut acknowledged = Vec::new();
    let mut first_failure = None;
    for n in 0..200 {
        let reply = create(n).await;
        match reply.status {
            201 => acknowledged.push(reply.body["id"].as_i64().unwrap()),
            503 => {
                first_failure = Some(n);
                break;
            }
            other => panic!("write {n}: unexpected {other}: {}", reply.body),
        }
    }
    let first_failure = first_failure.expect("the disk filled up within 200 writes");
    assert!(
        !acknowledged.is_empty(),
        "some writes fit before the disk was full"
    );

    // While the disk stays full: every write is refused, none acknowledged.
    for n in first_failure + 1..first_failure + 11 {
        let reply = create(n).await;
        assert_eq!(
            reply.status, 503,
            "write {n} on a full disk: {}",
            reply.body
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert!(reply.header("retry-after").is_some());
        assert_eq!(reply.body["status"], 503);
    }
    let reply = health().await;
    assert_eq!(
        reply.status, 503,
        "health while writes cannot commit: {}",
        reply.body
    );
    assert_eq!(reply.body["status"], 503);

    // Space returns: the service recovers by itself.
    disk.free_everything();
    let reply = health().await;
    assert_eq!(
        reply.status, 200,
        "health once space returned: {}",
        reply.body
    );
    for n in 1000..1005 {
        let reply = create(n).await;
        assert_eq!(reply.status, 201, "write after recovery: {}", reply.body);
        acknowledged.push(reply.body["id"].as_i64().unwrap());
    }
    acknowledged.sort_unstable();

    // Every acknowledged write is in the file, as another connection sees it...
    let stored_ids = |url: String| async move {
        let db = Database::connect(&url).await.unwrap();
        let mut ids: Vec<i64> = entity::task::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|task| task.id)
            .collect();
        ids.sort_unstable();
        db.close().await.unwrap();
        ids
    };
    assert_eq!(stored_ids(database_url.clone()).await, acknowledged);

    // ... and after a restart.
    server.stop().await;
    let server = ServerProcess::start(&database_url, &[]).await;
    let reply = send(
        http.get(server.url("/api/alice/tasks?limit=100"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["total"], acknowledged.len());
    server.stop().await;
    assert_eq!(stored_ids(database_url).await, acknowledged);
}
