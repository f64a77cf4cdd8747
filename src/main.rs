//! The `ibwarden` command. Everything lives in [`cli`]; this file only hands over.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
