//! gRPC definitions of berth's supervisor (`berth.supervisor.v1`) and shim
//! (`berth.shim.v1`) APIs and their shared types (`berth.types.v1`), generated at build time
//! from the `.proto` files in this crate. Modules follow the protobuf packages.
#![allow(missing_docs)]

/// `berth.types.v1`: messages shared by the supervisor and shim APIs.
pub mod types {
    /// Version 1.
    pub mod v1 {
        #![allow(clippy::all, missing_debug_implementations)]
        tonic::include_proto!("berth.types.v1");
    }
}

/// `berth.shim.v1`: the Task service one berth-shim serves for one container.
pub mod shim {
    /// Version 1.
    pub mod v1 {
        #![allow(clippy::all, missing_debug_implementations)]
        tonic::include_proto!("berth.shim.v1");
    }
}

/// `berth.supervisor.v1`: the containerd-like API of berth-supervisor.
pub mod supervisor {
    /// Version 1.
    pub mod v1 {
        #![allow(clippy::all, missing_debug_implementations)]
        tonic::include_proto!("berth.supervisor.v1");
    }
}
