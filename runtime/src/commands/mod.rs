//! One short function per CLI command, calling into the library.

mod images;
mod load;
mod rmi;
mod run;

pub use images::images;
pub use load::load;
pub use rmi::rmi;
pub use run::run;

/// Exit status for failures of hull itself (as `docker run` uses 125).
pub const EXIT_HULL_ERROR: i32 = 125;
