//! The sample DS as its own binary; see the library for what it does.

fn main() -> anyhow::Result<()> {
    sample_ds::run_with_args(std::env::args())
}
