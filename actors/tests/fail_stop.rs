//! A panic on any thread stops the whole process (defect 9 of issue 9: a panicking core
//! used to leave a half-alive server behind).
//!
//! The test runs itself as a child process in the "child" role: it installs the hook,
//! lets one thread panic the way a core would, and reports on stdout if it outlived it.

use std::process::Command;
use std::time::Duration;

const ROLE: &str = "TREESYNC_FAIL_STOP_CHILD";

fn child() {
    treesync_actors::runtime::fail_stop_on_panic();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let core = std::thread::spawn(move || {
        let _keep = tx;
        panic!("a core hit a broken invariant");
    });
    // The panicking thread drops `tx` as it unwinds, so `recv` returns at once unless the
    // hook stopped the process first; the timeout only bounds a broken hook.
    let _ = rx.recv_timeout(Duration::from_secs(30));
    let _ = core.join();
    println!("still serving after a core panicked");
}

#[test]
fn a_panic_on_one_thread_stops_the_whole_process() {
    if std::env::var_os(ROLE).is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new(exe)
        .args([
            "--exact",
            "a_panic_on_one_thread_stops_the_whole_process",
            "--nocapture",
        ])
        .env(ROLE, "1")
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the process went on: {stdout}");
    assert!(!stdout.contains("still serving"), "{stdout}");
    assert!(
        stderr.contains("stopping the process (fail-stop)"),
        "{stderr}"
    );
}
