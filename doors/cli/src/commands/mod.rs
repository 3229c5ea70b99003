//! One short function per CLI command, calling into the library.

mod attach;
mod build;
mod commit;
mod exec;
mod history;
mod image_inspect;
mod image_prune;
mod images;
mod inspect;
mod lifecycle;
mod load;
mod login;
mod logs;
mod network;
mod pool;
mod ps;
mod pull;
mod push;
mod rm;
mod rmi;
mod run;
mod save;
mod service;
mod share;
mod start;
mod stats;
mod stop;
mod supervise;
mod system_prune;
mod tag;
mod template;
mod top;
mod volume;
mod wait;

pub use build::{build, builder_prune};
pub use commit::commit;
pub use exec::exec;
pub use history::history;
pub use image_inspect::image_inspect;
pub use image_prune::image_prune;
pub use images::images;
pub use inspect::inspect;
pub(crate) use lifecycle::parse_signal;
pub use load::load;
pub use login::{login, logout};
pub use logs::logs;
pub use network::{network, port};
pub use pool::{pool, pool_serve, pooled};
pub use ps::ps;
pub use pull::pull;
pub use push::push;
pub use rm::rm;
pub use rmi::rmi;
pub use run::run;
pub use save::save;
pub use service::service;
pub use share::share_serve;
pub use start::start;
pub use stats::stats;
pub use stop::{kill, pause, stop};
pub use supervise::supervise;
pub use system_prune::system_prune;
pub use tag::tag;
pub use template::template;
pub use top::top;
pub use volume::volume;
pub use wait::wait;

/// Image ids in use by containers (running or not), each with the name
/// of one container using it: `rmi` and `image prune -a` keep them.
pub(crate) fn images_in_use(cli: &crate::cli::Cli) -> std::collections::BTreeMap<String, String> {
    lifecycle::containers(cli)
        .list()
        .into_iter()
        .map(|c| (c.config.image_id, c.config.name))
        .collect()
}

/// Exit status for failures of hull itself (as `docker run` uses 125).
pub const EXIT_HULL_ERROR: i32 = 125;
