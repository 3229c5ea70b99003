//! `hull`: the command-line front of the runtime.

mod cli;
mod commands;
mod oci_cli;
mod terminal;

use crate::cli::{BuilderCommand, Cli, Command, ImageCommand, SystemCommand};
use crate::commands::EXIT_HULL_ERROR;
use clap::Parser;

fn main() {
    hull_sandbox::timings::mark("cli_start");
    // As `hull-runc` or `hull oci`, the runc-compatible CLI.
    if let Some(argv) = crate::oci_cli::runc_argv() {
        std::process::exit(crate::oci_cli::main(argv));
    }
    let cli = Cli::parse();
    if let Command::Share(args) = &cli.command {
        std::process::exit(commands::share_serve(args));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HULL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        // Capped: a supervisor's stderr is its supervisor.log.
        .with_writer(|| hull_sandbox::capped_log::Stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("hull: start the async runtime: {err}");
            std::process::exit(EXIT_HULL_ERROR);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Run(args) => commands::run(&cli, args).await,
            Command::Load(args) => commands::load(&cli, args),
            Command::Images => commands::images(&cli),
            Command::Rmi(args) => commands::rmi(&cli, args),
            Command::Commit(args) => commands::commit(&cli, args).await,
            Command::Pull(args) => commands::pull(&cli, args).await,
            Command::Build(args) => commands::build(&cli, args).await,
            Command::Builder(BuilderCommand::Prune) => commands::builder_prune(&cli),
            Command::Login(args) => commands::login(&cli, args).await,
            Command::Logout(args) => commands::logout(&cli, args),
            Command::Save(args) => commands::save(&cli, args),
            Command::Push(args) => commands::push(&cli, args).await,
            Command::Tag(args) => commands::tag(&cli, args),
            Command::History(args) => commands::history(&cli, args),
            Command::Image(ImageCommand::Inspect(args)) => commands::image_inspect(&cli, args),
            Command::Image(ImageCommand::Prune(args)) => commands::image_prune(&cli, args),
            Command::Ps(args) => commands::ps(&cli, args),
            Command::Logs(args) => commands::logs(&cli, args),
            Command::Exec(args) => commands::exec(&cli, args).await,
            Command::Stop(args) => commands::stop(&cli, args).await,
            Command::Kill(args) => commands::kill(&cli, args).await,
            Command::Rm(args) => commands::rm(&cli, args).await,
            Command::Start(args) => commands::start(&cli, args).await,
            Command::Wait(args) => commands::wait(&cli, args).await,
            Command::Pause(args) => commands::pause(&cli, args, true).await,
            Command::Unpause(args) => commands::pause(&cli, args, false).await,
            Command::Inspect(args) => commands::inspect(&cli, args),
            Command::Top(args) => commands::top(&cli, args).await,
            Command::Stats(args) => commands::stats(&cli, args).await,
            Command::System(SystemCommand::Prune(args)) => commands::system_prune(&cli, args).await,
            Command::System(SystemCommand::Service(args)) => commands::service(&cli, args),
            Command::Network(command) => commands::network(&cli, command),
            Command::Volume(command) => commands::volume(&cli, command),
            Command::Template(command) => commands::template(&cli, command),
            Command::Port(args) => commands::port(&cli, args),
            Command::NetDns(args) => {
                hull_net::dns::run(&args.netns, args.listen, &args.allocations)
                    .map(|()| 0)
                    .map_err(|e| anyhow::anyhow!("name server: {e}"))
            }
            Command::Supervise(args) => commands::supervise(&cli, args).await,
            Command::Pool(command) => commands::pool(&cli, command).await,
            Command::PoolServe(args) => commands::pool_serve(&cli, args).await,
            Command::Pooled => commands::pooled(&cli).await,
            Command::Share(args) => Ok(commands::share_serve(args)),
            Command::Oci(args) => Ok(crate::oci_cli::main(
                std::iter::once("hull oci".into())
                    .chain(args.args.clone())
                    .collect(),
            )),
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hull: {}", one_line(&err));
            EXIT_HULL_ERROR
        }
    };
    hull_sandbox::timings::mark("cli_exit");
    // Exit without waiting for a stdin reader blocked in the runtime.
    std::process::exit(code);
}

/// "context: cause: cause" on one line.
fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}
