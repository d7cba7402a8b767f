//! `accessrail`: the command line.

mod access;
mod cli;
mod commands;
mod demo;
mod output;
mod provisioning;
mod reviews;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    // `accessrail users --json | head`: end quietly when the reader goes away, like other
    // command-line tools, instead of panicking on the broken pipe.
    sigpipe::reset();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ACCESSRAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("accessrail: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(failure) => {
            output::print_failure(&failure, json);
            ExitCode::from(failure.exit_code())
        }
    }
}
