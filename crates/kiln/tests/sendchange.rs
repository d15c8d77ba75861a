//! `kiln sendchange` against a running `kiln start` with `[change_hooks.base]`.
//!
//!     cargo test -p kiln --test sendchange

mod support;

use std::time::Duration;

use serde_json::json;
use support::kiln::{run_kiln, show, KilnMaster};

const TOKEN: &str = "sendchange-test-token";

#[tokio::test]
async fn sendchange_stores_a_change_the_api_shows() {
    let master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"true\"")
        .extra_toml(&format!("[change_hooks.base]\ntoken = \"{TOKEN}\""))
        .start()
        .await;
    let url = master.url().to_string();
    let args = [
        "sendchange",
        "--master",
        &url,
        "--token",
        TOKEN,
        "--author",
        "Alice <alice@example.invalid>",
        "--comments",
        "from the command line",
        "--branch",
        "main",
        "--revision",
        "abc123",
        "--repository",
        "https://example.invalid/r.git",
        "--project",
        "kiln",
        "--property",
        "ticket=42",
        "src/a.rs",
        "b.txt",
    ];
    let output = run_kiln(&args, Duration::from_secs(30)).await;
    assert!(output.status.success(), "{}", show(&output));
    let id: i64 =
        String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or_else(|_| panic!("{}", show(&output)));

    let change = master.get_one(&format!("changes/{id}")).await;
    assert_eq!(change["author"], json!("Alice <alice@example.invalid>"));
    assert_eq!(change["comments"], json!("from the command line"));
    assert_eq!((&change["branch"], &change["revision"]), (&json!("main"), &json!("abc123")));
    assert_eq!(change["files"], json!(["src/a.rs", "b.txt"]));
    assert_eq!(change["properties"], json!({"ticket": ["42", "Change"]}));
    assert_eq!(master.get("changes").await["meta"]["total"], json!(1));

    // A wrong token: a non-zero exit with the master's message, and nothing stored.
    let args = ["sendchange", "--master", &url, "--token", "wrong", "--author", "a", "--comments", "c"];
    let output = run_kiln(&args, Duration::from_secs(30)).await;
    assert!(!output.status.success(), "{}", show(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid token"), "{}", show(&output));
    assert_eq!(master.get("changes").await["meta"]["total"], json!(1));
}
