//! berth's image builder: the classic builder's `POST /build`, without HTTP.
//!
//! - [`parser`] reads Dockerfiles (directives, continuations, heredocs, both argument forms);
//!   [`shell`] expands variables in words as moby's lexer does.
//! - [`context`] unpacks a build context (tar, gzip, bzip2, xz, or a bare Dockerfile),
//!   applies `.dockerignore` ([`ignore`]) and resolves paths inside it.
//! - [`build`] runs a build: stages in dependency order (independent ones concurrently,
//!   unneeded ones skipped), the cache, every instruction. It talks to the engine only
//!   through [`Backend`], which runs containers and stores images.

pub mod backend;
pub mod build;
pub mod context;
pub mod error;
pub mod ignore;
pub mod instructions;
pub mod parser;
pub mod shell;

pub use backend::{Backend, CommitRequest, ImageInfo, Message, Output};
pub use build::{build, BuildOptions, Built};
pub use error::{BuildError, Result};
