//! The logs of a whole `make test` run, taken at trace level, hold no credential, Hub token,
//! OAuth signature or postback token. `make test` runs this after the suite, with
//! `CTWA_TEST_LOG_DIR` pointing at the logs of that run.

mod common;

use std::path::PathBuf;

use common::{DIALOG_PASSWORD, X_ACCESS_TOKEN_SECRET, X_CONSUMER_SECRET, log_dir};

/// `/postbacks/<namespace>/<bridge>/<token>` with a token-like last segment.
fn postback_token(line: &str) -> Option<&str> {
    line.match_indices("/postbacks/").find_map(|(i, _)| {
        let rest = &line[i + "/postbacks/".len()..];
        let mut parts = rest.splitn(4, '/');
        let (_ns, _bridge, token) = (parts.next()?, parts.next()?, parts.next()?);
        let token: &str = token
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .next()?;
        (token.len() >= 20).then_some(token)
    })
}

#[test]
#[ignore = "run by `make test` after the suite, on the logs of that run"]
fn no_secret_in_the_logs_of_the_test_run() {
    let dir: PathBuf = log_dir().expect("CTWA_TEST_LOG_DIR is set by make test");
    let mut files = 0;
    let mut bytes = 0u64;
    let mut findings = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the log directory exists") {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        files += 1;
        bytes += text.len() as u64;
        for (n, line) in text.lines().enumerate() {
            let leak = [
                DIALOG_PASSWORD,
                X_CONSUMER_SECRET,
                X_ACCESS_TOKEN_SECRET,
                "partner-password",
                "hubtok-",
                "oauth_signature",
            ]
            .into_iter()
            .find(|s| line.contains(s))
            .or_else(|| postback_token(line));
            if let Some(what) = leak {
                findings.push(format!("{}:{}: {what}", path.display(), n + 1));
            }
        }
    }
    println!("scanned {files} log files, {bytes} bytes");
    // The suite really ran at trace level: the operators logged their work.
    assert!(
        files >= 3 && bytes > 1_000_000,
        "too little was logged: {files} files, {bytes} bytes"
    );
    assert!(
        findings.is_empty(),
        "secrets in the logs:\n{}",
        findings.join("\n")
    );
}

#[test]
fn the_scanner_recognises_a_postback_token() {
    assert_eq!(
        postback_token("url=https://h/postbacks/ns/b/AbCdEfGhIjKlMnOpQrStUvWxYz012345 x"),
        Some("AbCdEfGhIjKlMnOpQrStUvWxYz012345")
    );
    assert_eq!(postback_token("path=/postbacks/ns/b/"), None);
}
