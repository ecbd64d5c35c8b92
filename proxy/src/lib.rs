//! Invoke-edge reverse proxy (work in progress).
