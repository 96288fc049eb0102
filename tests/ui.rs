//! Compile-time checks of the authoring macros: every mistake in
//! `tests/ui/fail` must fail with the message pinned in its `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
