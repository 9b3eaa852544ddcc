//! `oneflow shell`: an interactive session against one broker. With a
//! terminal: line editing, history and tab completion (rustyline). Without
//! one (a pipe, a file): commands are read line by line, no prompt is
//! printed, and the exit status says whether every command worked, so the
//! shell can be scripted and tested.

use std::borrow::Cow;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper, history::DefaultHistory};

use super::client::CliError;
use super::{ForUser, HistoryArgs, RequestArgs, Session, out, report};

/// One line of the shell, parsed by clap (so `help` and `<cmd> --help`
/// work as on the command line).
#[derive(Parser, Debug)]
#[command(
    no_binary_name = true,
    disable_version_flag = true,
    override_usage = "<command> [options] [args…]",
    help_template = "commands:\n{subcommands}"
)]
struct Line {
    #[command(subcommand)]
    cmd: ShellCmd,
}

#[derive(Subcommand, Debug)]
enum ShellCmd {
    /// Send an AI request: request [--model M | --modality image] <prompt…>
    Request(RequestArgs),
    /// Past requests, or with --transactions the ledger.
    History(HistoryArgs),
    /// Balance, holds and provider health.
    Status(ForUser),
    /// Totals and per-provider figures.
    Analytics(ForUser),
    /// Admin: add credits (to yourself, or to --user).
    AddCredits {
        amount: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Leave the shell.
    #[command(alias = "exit")]
    Quit,
}

/// Names completed as the first word, and the flags completed after each.
const COMMANDS: &[(&str, &[&str])] = &[
    (
        "request",
        &[
            "--model",
            "--modality",
            "--prompt",
            "--max-tokens",
            "--size",
            "--n",
            "--seconds",
            "--provider",
            "--region",
            "--strategy",
            "--max-price",
            "--idempotency-key",
        ],
    ),
    (
        "history",
        &["--limit", "--cursor", "--transactions", "--user"],
    ),
    ("status", &["--user"]),
    ("analytics", &["--user"]),
    ("add-credits", &["--user", "--note"]),
    ("help", &[]),
    ("quit", &[]),
    ("exit", &[]),
];

/// Splits a line into words: whitespace separates, single or double quotes
/// group, a backslash escapes the next character.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                cur.push(chars.next().ok_or("a line cannot end with `\\`")?);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// What one line did.
enum Step {
    Continue,
    /// The command failed (already reported).
    Failed,
    Quit,
}

/// Runs one line: parse, call the broker, print.
fn step(s: &Session, line: &str, me: &mut Option<String>) -> Step {
    let args = match words(line) {
        Ok(w) if w.is_empty() || w[0].starts_with('#') => return Step::Continue,
        Ok(w) => w,
        Err(e) => {
            report(&CliError::Usage(e), false);
            return Step::Failed;
        }
    };
    let parsed = match Line::try_parse_from(&args) {
        Ok(l) => l,
        Err(e) => {
            use clap::error::ErrorKind::{DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand};
            // Help asked for is an answer; anything else is an error.
            if matches!(
                e.kind(),
                DisplayHelp | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                out(&e.render().to_string());
                return Step::Continue;
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{}", e.render());
            return Step::Failed;
        }
    };
    let result = match parsed.cmd {
        ShellCmd::Quit => return Step::Quit,
        ShellCmd::Request(r) => s.request(&r),
        ShellCmd::History(h) => s.history(&h),
        ShellCmd::Status(u) => s.status(&u),
        ShellCmd::Analytics(u) => s.analytics(&u),
        ShellCmd::AddCredits { amount, user, note } => {
            whoami(s, user, me).and_then(|u| s.add_credits(&u, &amount, note.as_deref()))
        }
    };
    match result {
        Ok(text) => {
            out(&text);
            Step::Continue
        }
        Err(e) => {
            report(&e, s.json);
            Step::Failed
        }
    }
}

/// The user `add-credits` means: the one named, else the key's own user
/// (asked of the broker once, then remembered).
fn whoami(s: &Session, named: Option<String>, me: &mut Option<String>) -> Result<String, CliError> {
    if let Some(u) = named {
        return Ok(u);
    }
    if let Some(u) = me {
        return Ok(u.clone());
    }
    let v = s.client.get("/api/status")?.value;
    let id = v["user_id"]
        .as_str()
        .ok_or_else(|| CliError::Usage("the broker did not say who this key is".into()))?
        .to_string();
    *me = Some(id.clone());
    Ok(id)
}

/// Runs the shell until `quit` or the end of input.
pub fn run(s: &Session) -> ExitCode {
    if std::io::stdin().is_terminal() {
        interactive(s)
    } else {
        scripted(s)
    }
}

fn scripted(s: &Session) -> ExitCode {
    let mut me = None;
    let mut failed = false;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else {
            report(&CliError::Usage("cannot read stdin".into()), false);
            return ExitCode::FAILURE;
        };
        match step(s, &line, &mut me) {
            Step::Continue => {}
            Step::Failed => failed = true,
            Step::Quit => break,
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn interactive(s: &Session) -> ExitCode {
    let mut rl: Editor<Completion, DefaultHistory> = match Editor::new() {
        Ok(r) => r,
        Err(e) => {
            report(
                &CliError::Usage(format!("cannot open the terminal: {e}")),
                false,
            );
            return ExitCode::FAILURE;
        }
    };
    rl.set_helper(Some(Completion));
    out("oneflow shell: type `help` for commands, Tab to complete, `quit` to leave.\n");
    let mut me = None;
    loop {
        match rl.readline("oneflow> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = rl.add_history_entry(line.as_str());
                }
                if let Step::Quit = step(s, &line, &mut me) {
                    return ExitCode::SUCCESS;
                }
            }
            // Ctrl-C drops the line being typed, as in a login shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return ExitCode::SUCCESS,
            Err(e) => {
                report(&CliError::Usage(format!("cannot read a line: {e}")), false);
                return ExitCode::FAILURE;
            }
        }
    }
}

/// Tab completion of command names and of each command's flags.
struct Completion;

fn complete_word(line: &str, pos: usize) -> (usize, Vec<Pair>) {
    let before = &line[..pos];
    let start = before.rfind(char::is_whitespace).map_or(0, |i| {
        i + before[i..].chars().next().map_or(1, char::len_utf8)
    });
    let word = &before[start..];
    let first = before[..start].split_whitespace().next();
    let pair = |s: &str| Pair {
        display: s.to_string(),
        replacement: format!("{s} "),
    };
    let candidates: Vec<Pair> = match first {
        None => COMMANDS
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| c.starts_with(word))
            .map(pair)
            .collect(),
        Some(cmd) => COMMANDS
            .iter()
            .find(|(c, _)| *c == cmd)
            .map(|(_, flags)| *flags)
            .unwrap_or(&[])
            .iter()
            .filter(|f| word.starts_with('-') && f.starts_with(word))
            .map(|f| pair(f))
            .collect(),
    };
    (start, candidates)
}

impl Completer for Completion {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(complete_word(line, pos))
    }
}

impl Hinter for Completion {
    type Hint = String;
}

impl Highlighter for Completion {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Validator for Completion {}

impl Helper for Completion {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_a_shell() {
        assert_eq!(
            words(r#"request --model gpt "two words" it\'s"#).unwrap(),
            ["request", "--model", "gpt", "two words", "it's"]
        );
        assert_eq!(words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(words("a '' b").unwrap(), ["a", "", "b"]);
        assert!(words("request \"open").is_err());
    }

    #[test]
    fn tab_completes_commands_then_flags() {
        let names =
            |(_, c): (usize, Vec<Pair>)| c.into_iter().map(|p| p.display).collect::<Vec<_>>();
        assert_eq!(names(complete_word("hi", 2)), ["history"]);
        assert_eq!(names(complete_word("add", 3)), ["add-credits"]);
        assert_eq!(names(complete_word("history --l", 11)), ["--limit"]);
        assert_eq!(complete_word("history --l", 11).0, 8);
        assert!(names(complete_word("request hello", 13)).is_empty());
    }

    #[test]
    fn every_shell_command_parses() {
        for line in [
            "request --modality image a red fox",
            "history --limit 5 --transactions",
            "status",
            "analytics --user usr_1",
            "add-credits 2.5 --user usr_1",
            "quit",
            "exit",
        ] {
            let w = words(line).unwrap();
            Line::try_parse_from(&w).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }
}
