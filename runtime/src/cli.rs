//! Command-line arguments, apart from what the commands do.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// hull runs each OCI container in its own microVM.
#[derive(Debug, Parser)]
#[command(name = "hull", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// Where images and disks are kept.
    #[arg(
        long,
        env = "HULL_ROOT",
        default_value = "/var/lib/hull",
        global = true
    )]
    pub root: PathBuf,
    /// Where running sandboxes keep their sockets and logs.
    #[arg(long, env = "HULL_RUN_DIR", default_value = "/run/hull", global = true)]
    pub run_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new container, in its own VM.
    Run(Box<RunArgs>),
    /// Load images from an OCI archive (oci-archive or `docker save` tar).
    Load(LoadArgs),
    /// List images.
    Images,
    /// Remove images.
    Rmi(RmiArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open and pass it to the container.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as (name|uid[:group|gid]).
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// VM memory (e.g. 512m, 1g).
    #[arg(short = 'm', long, default_value = "512m")]
    pub memory: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Which hypervisor runs the VM: auto, qemu or hull-vmm.
    #[arg(long, env = "HULL_HYPERVISOR", default_value = "auto")]
    pub hypervisor: String,
    /// Guest kernel (default: found next to hull, or HULL_KERNEL).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Guest initramfs with the agent (default: found next to hull, or HULL_INITRAMFS).
    #[arg(long, value_name = "FILE")]
    pub initramfs: Option<PathBuf>,
    /// Image to run.
    pub image: String,
    /// Command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive to load.
    #[arg(short = 'i', long = "input", value_name = "ARCHIVE")]
    pub input: PathBuf,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Parses Docker-style sizes: "512m", "1g", "1073741824" (bytes), into MiB.
pub fn parse_mib(size: &str) -> Option<u32> {
    let size = size.trim().to_ascii_lowercase();
    let (digits, unit) = match size.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => size.split_at(i),
        None => (size.as_str(), ""),
    };
    let n: u64 = digits.parse().ok()?;
    let bytes = match unit.trim_end_matches('b') {
        "" => n,
        "k" => n.checked_mul(1 << 10)?,
        "m" => n.checked_mul(1 << 20)?,
        "g" => n.checked_mul(1 << 30)?,
        _ => return None,
    };
    u32::try_from(bytes >> 20).ok().filter(|&mib| mib > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_mib("512m"), Some(512));
        assert_eq!(parse_mib("1g"), Some(1024));
        assert_eq!(parse_mib("1GB"), Some(1024));
        assert_eq!(parse_mib("268435456"), Some(256));
        assert_eq!(parse_mib("0"), None);
        assert_eq!(parse_mib("12x"), None);
        assert_eq!(parse_mib(""), None);
    }

    #[test]
    fn run_keeps_hyphenated_command_args() {
        let cli =
            Cli::try_parse_from(["hull", "run", "--rm", "img", "sh", "-c", "echo -n hi"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(run.rm);
        assert_eq!(run.command, ["sh", "-c", "echo -n hi"]);
    }
}
