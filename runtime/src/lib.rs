//! Virtual-server instance runtime (work in progress).
