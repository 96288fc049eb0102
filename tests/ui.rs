//! Compile-time checks of the authoring macros: every mistake in
//! `tests/ui/fail` must fail with the message pinned in its `.stderr`.
//!
//! Pinned with `--all-features` (the README's test command): rustc's list
//! of "other types that implement `Deserialize`" in `not_serializable`
//! depends on which features of serde_json the build turns on.
//! Re-pin with `TRYBUILD=overwrite cargo test --all-features --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
