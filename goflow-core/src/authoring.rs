//! What `#[dag]` asks of the tasks it wires. Not a public API: the code
//! `#[task]` and `#[dag]` generate uses it through `goflow::__private`.
//!
//! `#[dag]` sees a DAG body's syntax but not the tasks it calls, which are
//! defined elsewhere. What only the type checker knows, it checks with
//! the traits here, so that a mistake is reported once, in goflow's words,
//! on the user's tokens, rather than as an error about generated code:
//!
//! - `#[task]` implements [`Signature`] for the hidden type named like the
//!   task function: how many inputs the task takes, their types, and a
//!   call taking them as a tuple.
//! - For a call `total(rows, "north")`, `#[dag]` asserts in a constant
//!   that `<total as Signature>::INPUTS` is 2, with a message such as
//!   "`total` takes 1 upstream output, 2 given" spanned on the call.
//! - So that rustc does not report the same mistake again, in its own
//!   words, against the generated call, the call and the types of its
//!   arguments go through [`Given`]: `Given<true>` when the counts
//!   match (the inputs are then typed as the task's parameters, so a
//!   wrong upstream is an ordinary "expected `Summary`, found `Vec<Row>`"
//!   on the argument), `Given<false>` when they do not (the inputs keep
//!   the types they have; the constant has already failed the build).
//!   A constant argument's own type is not nameable in the generated
//!   code, so [`constant`] takes it from the value ([`witness`]).

#![doc(hidden)]

use std::future::Future;
use std::marker::PhantomData;

use crate::{TaskContext, TaskDef, TaskError};

/// The most inputs [`Nth`] is implemented for: a task taking more cannot
/// be wired by `#[dag]`.
pub const MAX_INPUTS: usize = 16;

/// Implemented by `#[task]`, next to [`TaskDef`], for the hidden type named
/// like the task function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a #[task] function",
    label = "not a task",
    note = "a DAG body calls functions marked `#[task]`"
)]
pub trait Signature: TaskDef {
    /// How many inputs the task takes: its parameters other than
    /// `&TaskContext`, each given in the DAG body as an upstream task's
    /// output or as a constant.
    const INPUTS: usize;
    /// The types of those parameters, in order, as a tuple.
    type Inputs;
    /// The task ids its body names in `Branch::to([...])` calls with
    /// string literals: a branch task's choices, as far as the macro can
    /// see them.
    const BRANCH_TARGETS: &'static [&'static str] = &[];
    /// Calls the task function with its inputs.
    fn call(
        ctx: TaskContext,
        inputs: Self::Inputs,
    ) -> impl Future<Output = Result<<Self as TaskDef>::Output, TaskError>>;
}

/// The type of a tuple's field `I`.
#[diagnostic::on_unimplemented(
    message = "a task wired by #[dag] takes at most 16 inputs",
    label = "takes too many inputs"
)]
pub trait Nth<const I: usize> {
    /// That field's type.
    type Type;
}

/// Whether a DAG body gives a task as many inputs as it takes:
/// `Given<{ N == <Task as Signature>::INPUTS }>` for a call with `N`
/// arguments.
pub struct Given<const MATCHES: bool>;

/// The type the `I`th argument of a call of `Task` must have: the task's
/// parameter when the counts match, else `Fallback`, the type the argument
/// has (nothing is checked: the count already failed the build).
pub trait Input<Task, Fallback, const I: usize> {
    /// The argument's type.
    type Type;
}

impl<T: Signature, F, const I: usize> Input<T, F, I> for Given<true>
where
    T::Inputs: Nth<I>,
{
    type Type = <T::Inputs as Nth<I>>::Type;
}

impl<T, F, const I: usize> Input<T, F, I> for Given<false> {
    type Type = F;
}

/// What a constant argument's value is before it is checked: `witness(&v)`
/// names the type of `v` without moving it.
pub fn witness<V>(_value: &V) -> PhantomData<V> {
    PhantomData
}

/// A constant argument, the `I`th of a call of `T`: `value` returns it,
/// typed as the task's parameter when the counts match (a closure, so
/// that a mismatch is reported on the constant as a plain "expected
/// `u32`, found `&str`", and a literal takes the parameter's type);
/// `V`, the constant's own type, otherwise.
pub fn constant<G, T, V, F, const I: usize>(
    _own: PhantomData<V>,
    value: F,
) -> <G as Input<T, V, I>>::Type
where
    G: Input<T, V, I>,
    F: FnOnce() -> <G as Input<T, V, I>>::Type,
{
    value()
}

/// Calls `Task` with the arguments of a DAG body's call, `Args`, which are
/// its inputs when the counts match.
pub trait Call<Task: TaskDef, Args> {
    /// The task's future.
    fn call(
        ctx: TaskContext,
        args: Args,
    ) -> impl Future<Output = Result<<Task as TaskDef>::Output, TaskError>>;
}

impl<T: Signature> Call<T, T::Inputs> for Given<true> {
    fn call(
        ctx: TaskContext,
        args: T::Inputs,
    ) -> impl Future<Output = Result<<T as TaskDef>::Output, TaskError>> {
        T::call(ctx, args)
    }
}

impl<T: TaskDef, A> Call<T, A> for Given<false> {
    fn call(
        _ctx: TaskContext,
        _args: A,
    ) -> impl Future<Output = Result<<T as TaskDef>::Output, TaskError>> {
        // Unreachable: the DAG's inputs-count assertion failed the build.
        std::future::ready(Err(TaskError::fatal(format!(
            "task `{}` was given the wrong number of inputs",
            T::NAME
        ))))
    }
}

macro_rules! nth {
    (@tuple $fields:tt [$($index:tt $ty:ident)*]) => {
        $(nth!(@one $index $ty $fields);)*
    };
    (@one $index:tt $ty:ident ($($field:ident)*)) => {
        impl<$($field),*> Nth<$index> for ($($field,)*) {
            type Type = $ty;
        }
    };
    ($($fields:tt $indices:tt)*) => {
        $(nth!(@tuple $fields $indices);)*
    };
}

nth! {
    (A) [0 A]
    (A B) [0 A 1 B]
    (A B C) [0 A 1 B 2 C]
    (A B C D) [0 A 1 B 2 C 3 D]
    (A B C D E) [0 A 1 B 2 C 3 D 4 E]
    (A B C D E F) [0 A 1 B 2 C 3 D 4 E 5 F]
    (A B C D E F G) [0 A 1 B 2 C 3 D 4 E 5 F 6 G]
    (A B C D E F G H) [0 A 1 B 2 C 3 D 4 E 5 F 6 G 7 H]
    (A B C D E F G H I) [0 A 1 B 2 C 3 D 4 E 5 F 6 G 7 H 8 I]
    (A B C D E F G H I J) [0 A 1 B 2 C 3 D 4 E 5 F 6 G 7 H 8 I 9 J]
    (A B C D E F G H I J K) [0 A 1 B 2 C 3 D 4 E 5 F 6 G 7 H 8 I 9 J 10 K]
    (A B C D E F G H I J K L) [0 A 1 B 2 C 3 D 4 E 5 F 6 G 7 H 8 I 9 J 10 K 11 L]
    (A B C D E F G H I J K L M) [0 A 1 B 2 C 3 D 4 E 5 F 6 G 7 H 8 I 9 J 10 K 11 L 12 M]
    (A B C D E F G H I J K L M N) [0 A 1 B 2 C 3 D 4 E 5 F 6 G 7 H 8 I 9 J 10 K 11 L 12 M 13 N]
    (A B C D E F G H I J K L M N O) [0 A 1 B 2 C 3 D 4 E 5 F 6 G 7 H 8 I 9 J 10 K 11 L 12 M 13 N 14 O]
    (A B C D E F G H I J K L M N O P) [0 A 1 B 2 C 3 D 4 E 5 F 6 G 7 H 8 I 9 J 10 K 11 L 12 M 13 N 14 O 15 P]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same<T>(_: T, _: T) {}

    #[test]
    fn nth_names_each_field() {
        let first: <(u8, String, bool) as Nth<0>>::Type = 1u8;
        let third: <(u8, String, bool) as Nth<2>>::Type = true;
        same(first, 1u8);
        same(third, false);
    }

    #[test]
    fn a_mismatched_count_keeps_the_given_type() {
        struct NotATask;
        let given: <Given<false> as Input<NotATask, &str, 3>>::Type = "kept";
        assert_eq!(given, "kept");
    }
}

/// The message for the first of `targets` that is not in `downstream`, as
/// UTF-8 in an array of `N` bytes (`N` from [`branch_message_len`]; 0 when
/// every target is a downstream). `#[dag]` fails the build with it: const
/// evaluation cannot format, so the message is assembled here.
pub const fn branch_message<const N: usize>(
    task: &str,
    targets: &[&str],
    downstream: &[&str],
) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(bad) = unknown_target(targets, downstream) {
        let mut at = 0;
        let mut i = 0;
        while i < 5 + 3 * downstream.len() {
            let bytes = piece(i, task, bad, downstream).as_bytes();
            let mut b = 0;
            while b < bytes.len() && at < N {
                out[at] = bytes[b];
                at += 1;
                b += 1;
            }
            i += 1;
        }
    }
    out
}

/// The length of [`branch_message`]'s message.
pub const fn branch_message_len(task: &str, targets: &[&str], downstream: &[&str]) -> usize {
    let Some(bad) = unknown_target(targets, downstream) else {
        return 0;
    };
    let mut len = 0;
    let mut i = 0;
    while i < 5 + 3 * downstream.len() {
        len += piece(i, task, bad, downstream).len();
        i += 1;
    }
    len
}

/// Piece `i` of "branch task `route` names `big_reprot` in `Branch::to`,
/// which is not one of its direct downstreams in this DAG: `a`, `b`".
const fn piece<'a>(i: usize, task: &'a str, bad: &'a str, downstream: &[&'a str]) -> &'a str {
    match i {
        0 => "branch task `",
        1 => task,
        2 => "` names `",
        3 => bad,
        4 if downstream.is_empty() => {
            "` in `Branch::to`, but it has no direct downstreams in this DAG"
        }
        4 => "` in `Branch::to`, which is not one of its direct downstreams in this DAG:",
        _ => {
            let (j, r) = ((i - 5) / 3, (i - 5) % 3);
            match r {
                0 if j == 0 => " `",
                0 => ", `",
                1 => downstream[j],
                _ => "`",
            }
        }
    }
}

const fn unknown_target<'a>(targets: &[&'a str], downstream: &[&str]) -> Option<&'a str> {
    let mut t = 0;
    while t < targets.len() {
        let mut found = false;
        let mut d = 0;
        while d < downstream.len() {
            if same(targets[t], downstream[d]) {
                found = true;
            }
            d += 1;
        }
        if !found {
            return Some(targets[t]);
        }
        t += 1;
    }
    None
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod branch_tests {
    use super::*;

    fn message(task: &str, targets: &[&str], downstream: &[&str]) -> String {
        let len = branch_message_len(task, targets, downstream);
        let bytes = branch_message::<256>(task, targets, downstream);
        String::from_utf8(bytes[..len].to_vec()).unwrap()
    }

    #[test]
    fn names_the_first_unknown_target_and_the_downstreams() {
        assert_eq!(branch_message_len("route", &["a", "b"], &["b", "a"]), 0);
        assert_eq!(branch_message_len("route", &[], &[]), 0);
        assert_eq!(
            message(
                "route",
                &["big_report", "big_reprot"],
                &["big_report", "small_report"]
            ),
            "branch task `route` names `big_reprot` in `Branch::to`, which is not one of its \
             direct downstreams in this DAG: `big_report`, `small_report`"
        );
        assert_eq!(
            message("route", &["x"], &[]),
            "branch task `route` names `x` in `Branch::to`, but it has no direct downstreams \
             in this DAG"
        );
    }
}
