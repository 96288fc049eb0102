//! Compile-time checks of the authoring macros: every mistake in
//! `tests/ui/fail` must fail with the message pinned in its `.stderr`.
//!
//! Pinned with rustc 1.95 (other versions word some errors differently).
//! Re-pin with `TRYBUILD=overwrite cargo test --all-features --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
