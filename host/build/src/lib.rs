//! hull's image builder: a Dockerfile and a build context to an image in
//! hull-image's store. COPY and ADD layers are made on the host; every
//! RUN step runs as a hull container, in a microVM of its own, on the
//! previous step's image.
//!
//! The builder is a library so that `hull build` (the CLI) and the Engine
//! API's `POST /build` are thin doors onto it.

pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod layer;
