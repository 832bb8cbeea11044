//! `megatorrent`: the client CLI. Parses the command line, runs it, and reports a failure as
//! one `error: …` line on stderr with exit status 1.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use megatorrent::client::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(cli::run(args, &mut std::io::stdout()))
                .map_err(anyhow::Error::from)
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the cause chain on one line: "what failed: why: root cause".
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
