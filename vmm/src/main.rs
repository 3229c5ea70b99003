//! The `hull-vmm` binary: parse the VM description, boot it, and exit
//! with a status that says how the guest ended.

use std::process::ExitCode;

use anyhow::Context;
use hull_vmm::config::{self, Command};

fn run() -> anyhow::Result<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match config::parse_args(&args)? {
        Command::Help => {
            print!("{}", config::USAGE);
            return Ok(0);
        }
        Command::Run(c) => c,
    };
    let reason = match &cfg.restore {
        Some(dir) => {
            let valid = cfg.validate_restore()?;
            hull_vmm::restore::run(&valid)
                .with_context(|| format!("cannot restore the VM saved in {}", dir.display()))?
        }
        None => {
            let valid = cfg.validate()?;
            hull_vmm::builder::run(&valid).context("cannot start the VM")?
        }
    };
    let code = reason.exit_code();
    if code != 0 {
        eprintln!("hull-vmm: {reason}");
    }
    Ok(code)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => {
            // vCPU threads may still be inside KVM_RUN: end the process now.
            std::process::exit(code);
        }
        Err(e) => {
            eprintln!("hull-vmm: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
