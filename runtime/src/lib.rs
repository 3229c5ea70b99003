//! hull's host side: the image store, sandboxes and their hypervisors.

pub mod agent_client;
pub mod assets;
pub mod cli;
pub mod commands;
pub mod container;
pub mod hypervisor;
pub mod image;
pub mod logs;
pub mod network;
pub mod oci;
pub mod oci_cli;
pub mod sandbox;
pub mod spec;
pub mod supervisor;
pub mod terminal;
pub mod timings;
