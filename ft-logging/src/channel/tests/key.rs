//! Key files: each way a file can fail to be a key has its own error, and
//! every message is one line that names the file.

use std::fs;
use std::path::PathBuf;

use crate::channel::{AuthKey, ChannelError, KeyProblem, MAX_KEY_FILE, MIN_KEY_LEN};

/// A file of its own for each test, removed when dropped.
struct KeyFile(PathBuf);

impl KeyFile {
    fn new(name: &str, contents: Option<&[u8]>) -> Self {
        let path =
            std::env::temp_dir().join(format!("ftvm-channel-key-{}-{name}", std::process::id()));
        let _ = fs::remove_file(&path);
        if let Some(contents) = contents {
            fs::write(&path, contents).unwrap();
        }
        Self(path)
    }

    /// The problem reading it, checking the message on the way.
    fn problem(&self) -> KeyProblem {
        let error = AuthKey::from_file(&self.0).unwrap_err();
        let message = error.to_string();
        assert!(!message.contains('\n'), "{message:?}");
        assert!(message.contains(&*self.0.to_string_lossy()), "{message}");
        match error {
            ChannelError::Key { path, problem } => {
                assert_eq!(path, self.0);
                problem
            }
            other => panic!("not a key error: {other}"),
        }
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn a_missing_file_cannot_be_read() {
    let file = KeyFile::new("missing", None);
    let problem = file.problem();
    assert!(
        matches!(&problem, KeyProblem::Read(error) if error.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(
        problem.to_string().starts_with("cannot read it"),
        "{problem}"
    );
}

#[test]
fn an_empty_file_is_empty() {
    let file = KeyFile::new("empty", Some(b""));
    let problem = file.problem();
    assert!(matches!(problem, KeyProblem::Empty));
    assert_eq!(problem.to_string(), "it is empty");
}

#[test]
fn a_short_key_is_too_short() {
    let file = KeyFile::new("short", Some(&[1; MIN_KEY_LEN - 1]));
    let problem = file.problem();
    assert!(matches!(problem, KeyProblem::TooShort(len) if len == MIN_KEY_LEN - 1));
    assert!(problem.to_string().contains("too short"), "{problem}");
}

#[test]
fn a_large_file_is_too_large() {
    let file = KeyFile::new("large", Some(&[1; MAX_KEY_FILE + 1]));
    let problem = file.problem();
    assert!(matches!(problem, KeyProblem::TooLarge));
    assert!(problem.to_string().contains("not a key"), "{problem}");
}

#[test]
fn the_problems_read_differently() {
    let files = [
        KeyFile::new("differ-missing", None),
        KeyFile::new("differ-empty", Some(b"")),
        KeyFile::new("differ-short", Some(b"short")),
        KeyFile::new("differ-large", Some(&[1; MAX_KEY_FILE + 1])),
    ];
    let mut messages: Vec<String> = files.iter().map(|f| f.problem().to_string()).collect();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), files.len(), "{messages:#?}");
}

#[test]
fn keys_at_the_limits_are_accepted() {
    for (name, len) in [("shortest", MIN_KEY_LEN), ("longest", MAX_KEY_FILE)] {
        let file = KeyFile::new(name, Some(&vec![0xa5; len]));
        let key = AuthKey::from_file(&file.0).unwrap();
        // The bytes never show.
        assert_eq!(format!("{key:?}"), format!("AuthKey({len} bytes)"));
    }
}
