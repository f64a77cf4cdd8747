//! Reading answers from a person at a terminal, or line by line from a pipe.
//!
//! On a terminal, secrets are read with echo turned off (termios), and the terminal is
//! restored even on error. When stdin is not a terminal (scripts, tests), each answer is
//! the next line of stdin. Prompts go to stderr so stdout stays machine-readable.

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::{bail, Context};
use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroize;

use ibwarden::secret::Secret;

/// A source of answers.
pub struct Prompter {
    terminal: bool,
}

impl Prompter {
    /// Uses the process's stdin.
    pub fn new() -> Prompter {
        Prompter {
            terminal: io::stdin().is_terminal(),
        }
    }

    /// True if a person is typing (stdin is a terminal).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    fn prompt(&self, text: &str) {
        let mut err = io::stderr().lock();
        let _ = write!(err, "{text}");
        let _ = err.flush();
    }

    /// Reads one raw line (without the newline) into `buf`. EOF is an error.
    fn read_into(&self, buf: &mut String) -> anyhow::Result<()> {
        let n = io::stdin()
            .lock()
            .read_line(buf)
            .context("cannot read from stdin")?;
        if n == 0 {
            bail!("no more input: stdin was closed before all questions were answered");
        }
        if buf.ends_with('\n') {
            buf.pop();
            if buf.ends_with('\r') {
                buf.pop();
            }
        }
        Ok(())
    }

    /// Asks a question; an empty answer gives `default` (shown in brackets) if there is one.
    pub fn line(&mut self, question: &str, default: Option<&str>) -> anyhow::Result<String> {
        match default {
            Some(d) if !d.is_empty() => self.prompt(&format!("{question} [{d}]: ")),
            _ => self.prompt(&format!("{question}: ")),
        }
        let mut buf = String::new();
        self.read_into(&mut buf)?;
        if !self.terminal {
            // Keep the transcript readable when answers come from a pipe.
            eprintln!();
        }
        let answer = buf.trim().to_string();
        Ok(match default {
            Some(d) if answer.is_empty() => d.to_string(),
            _ => answer,
        })
    }

    /// Asks a yes/no question.
    pub fn confirm(&mut self, question: &str, default: bool) -> anyhow::Result<bool> {
        let hint = if default { "Y/n" } else { "y/N" };
        loop {
            self.prompt(&format!("{question} [{hint}]: "));
            let mut buf = String::new();
            self.read_into(&mut buf)?;
            if !self.terminal {
                eprintln!();
            }
            match buf.trim().to_ascii_lowercase().as_str() {
                "" => return Ok(default),
                "y" | "yes" => return Ok(true),
                "n" | "no" => return Ok(false),
                _ if self.terminal => eprintln!("Please answer y or n."),
                _ => bail!("expected y or n for: {question}"),
            }
        }
    }

    /// Reads a secret without echoing it. The value is never printed.
    pub fn secret(&mut self, question: &str) -> anyhow::Result<Secret> {
        // Echo goes off before the prompt appears, so nothing typed in answer to the prompt
        // can be echoed.
        let guard = if self.terminal {
            Some(EchoOff::new().context("cannot turn off terminal echo")?)
        } else {
            None
        };
        self.prompt(&format!("{question}: "));
        // Room for any realistic secret, so `read_line` does not reallocate and leave a
        // copy of a partial secret in freed memory.
        let mut buf = String::with_capacity(1024);
        let result = self.read_into(&mut buf);
        drop(guard);
        // With echo off the user's Enter did not move to a new line; do it for them.
        eprintln!();
        if let Err(e) = result {
            buf.zeroize();
            return Err(e);
        }
        Ok(Secret::new(buf))
    }
}

/// Turns terminal echo off for stdin until dropped.
struct EchoOff {
    saved: termios::Termios,
}

impl EchoOff {
    fn new() -> nix::Result<EchoOff> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(&stdin)?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}
