mod jobs {
    use goflow::prelude::*;

    #[task]
    pub fn extract() -> Vec<u32> {
        vec![1, 2, 3]
    }

    #[task]
    fn total(values: Vec<u32>) -> u32 {
        values.iter().sum()
    }
}

use goflow::prelude::*;

#[dag]
fn numbers() {
    let values = jobs::extract();
    let sum = jobs::total(values);
}

fn main() {}
