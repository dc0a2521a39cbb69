//! `monitor` commands: where the replay is, and going to an exit.

use std::fmt::Write as _;

use super::super::{Position, Replayer, ending_status};

/// A parsed `monitor` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    When,
    Goto(u64),
    Help,
}

pub const HELP: &str = "\
ftvm monitor commands:
  monitor when        the exit and instruction the replay is at, and its virtual time
  monitor goto EXIT   go to just after exit EXIT (then `maintenance flush register-cache`,
                      or use `goto EXIT` from scripts/ftvm.gdb, which does both)
";

/// The command in `text`, or a message saying what is wrong with it.
pub fn parse(text: &str) -> Result<Command, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["when"] => Ok(Command::When),
        ["help"] | [] => Ok(Command::Help),
        ["goto", exit] => exit
            .parse()
            .map(Command::Goto)
            .map_err(|_| format!("goto: `{exit}` is not an exit number")),
        ["goto", ..] => Err("usage: monitor goto EXIT".into()),
        _ => Err(format!(
            "unknown monitor command `{text}`; try `monitor help`"
        )),
    }
}

/// `monitor when`'s answer.
pub fn describe_position(position: Position, replayer: &Replayer) -> String {
    let ns = replayer.now_ns();
    let mut text = format!(
        "exit {} of {}, instruction {} since it, virtual time {}.{:09} s",
        position.exit,
        replayer.total_exits(),
        position.steps,
        ns / 1_000_000_000,
        ns % 1_000_000_000
    );
    if let Some(ending) = replayer.ending() {
        let _ = write!(text, " (ended, status {})", ending_status(ending));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_bad_ones_say_why() {
        assert_eq!(parse("when"), Ok(Command::When));
        assert_eq!(parse(" goto  42 "), Ok(Command::Goto(42)));
        assert_eq!(parse(""), Ok(Command::Help));
        assert!(parse("goto x").unwrap_err().contains("not an exit number"));
        assert!(parse("goto 1 2").unwrap_err().contains("usage"));
        assert!(
            parse("fly")
                .unwrap_err()
                .contains("unknown monitor command")
        );
    }
}
