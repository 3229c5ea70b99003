//! One short function per CLI command, calling into the library.

mod image_inspect;
mod image_prune;
mod images;
mod load;
mod login;
mod pull;
mod rmi;
mod run;
mod save;

pub use image_inspect::image_inspect;
pub use image_prune::image_prune;
pub use images::images;
pub use load::load;
pub use login::{login, logout};
pub use pull::pull;
pub use rmi::rmi;
pub use run::run;
pub use save::save;

/// Image ids in use by containers, each with one container using it.
/// There is no container state yet (detached containers come later):
/// until then nothing is in use and this is where `rmi` and `image
/// prune -a` will learn otherwise.
pub(crate) fn images_in_use(_cli: &crate::cli::Cli) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::new()
}

/// Exit status for failures of hull itself (as `docker run` uses 125).
pub const EXIT_HULL_ERROR: i32 = 125;
