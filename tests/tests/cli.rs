//! The `floe` client commands as a user runs them: a real `floe serve`, the real binary,
//! stdin and stdout.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use floe_client::Encoding;
use floe_client::api::ProduceRecordJson;
use floe_tests::{FloeProcess, floe_binary, free_port};
use serde_json::Value;

fn floe(args: &[&str], stdin: &str) -> Output {
    floe_tests::run_floe(args, &[], stdin)
}

fn stdout(output: &Output) -> String {
    floe_tests::succeeded(output)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_option_goes_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    stdout(&floe(
        &["-s", &server.url, "topics", "create", "clicks", "-p", "3"],
        "",
    ));
    let before = stdout(&floe(&["-s", &server.url, "topics", "list"], ""));
    let after = stdout(&floe(&["topics", "list", "--server", &server.url], ""));
    assert_eq!(before, "clicks\t3 partitions\n");
    assert_eq!(before, after);

    stdout(&floe(
        &["produce", "-s", &server.url, "clicks", "-K", ":", "-p", "1"],
        "alice:home\nbob:cart\n",
    ));
    let consumed = stdout(&floe(
        &[
            "-s",
            &server.url,
            "consume",
            "clicks",
            "-p",
            "1",
            "-F",
            "%p/%o %k=%v",
        ],
        "",
    ));
    assert_eq!(consumed, "1/0 alice=home\n1/1 bob=cart\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_data_whatever_their_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    floe_tests::create_topic(&client, "raw", 1).await;
    let text = |value: &str| ProduceRecordJson {
        value: Some(Value::String(value.into())),
        ..ProduceRecordJson::default()
    };
    client
        .produce("raw", vec![text("\0pwned"), text("after")], Encoding::Text)
        .await
        .expect("produce text");
    // A NUL-prefixed value is printed as the value it is, and the next record follows.
    let output = floe(&["-s", &server.url, "consume", "raw"], "");
    assert_eq!(stdout(&output), "\0pwned\nafter\n");

    // 0xff 0xfe is not UTF-8: only base64 can carry it.
    client
        .produce("raw", vec![text("//4=")], Encoding::Base64)
        .await
        .expect("produce bytes");

    // The same topic read as base64, all three records.
    let output = floe(
        &["-s", &server.url, "consume", "raw", "--encoding", "base64"],
        "",
    );
    assert_eq!(stdout(&output), "AHB3bmVk\nYWZ0ZXI=\n//4=\n");

    // As text, the third record cannot be shown: the failure is reported on stderr, with
    // what to do, and the exit status says so; the records before it were printed.
    let output = floe(&["-s", &server.url, "consume", "raw"], "");
    assert!(!output.status.success());
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.contains("partition 0") && errors.contains("base64"),
        "{errors}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_survives_a_broker_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = FloeProcess::start(dir.path(), &["--listen", &listen]);
    let url = server.url.clone();
    stdout(&floe(&["-s", &url, "topics", "create", "t"], ""));
    stdout(&floe(&["-s", &url, "produce", "t"], "one\n"));

    let follower = Command::new(floe_binary())
        .args([
            "-s",
            &url,
            "consume",
            "t",
            "-f",
            "-n",
            "2",
            "--timeout",
            "5s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn follower");
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server = FloeProcess::start(dir.path(), &["--listen", &listen]);
    stdout(&floe(&["-s", &server.url, "produce", "t"], "two\n"));

    let output = tokio::task::spawn_blocking(move || follower.wait_with_output())
        .await
        .expect("join")
        .expect("follower exits");
    assert_eq!(stdout(&output), "one\ntwo\n");
}

#[test]
fn floe_bench_runs_the_separate_benchmark_binary() {
    let output = floe(&["bench", "disk", "--help"], "");
    let help = stdout(&output);
    assert!(help.contains("Usage: floe-bench disk"), "{help}");
}
