//! Byte mutations, as coverage-blind fuzzers make them: a valid input
//! changed a little at a time (bits flipped, bytes set to edge values,
//! runs inserted, deleted, repeated, or spliced in from another input).
//! Small changes to a valid encoding reach deep into a decoder and past
//! it, where random bytes would be refused at the first field.

use rand::rngs::StdRng;
use rand::Rng;

/// Largest input a mutation makes, so no target is fed more than a few
/// pages at once.
pub const INPUT_BYTES_MAX: usize = 64 * 1024;

/// Values at the edges of the integer encodings (varints, lengths, tags).
const EDGES: &[u8] = &[0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x3f, 0x40];

/// `input` with one to eight mutations, some of them taking bytes from
/// `other` (another input of the same corpus).
pub fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..rng.gen_range(1..=8) {
        let len = bytes.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let at = rng.gen_range(0..len);
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let at = rng.gen_range(0..len);
                bytes[at] = EDGES[rng.gen_range(0..EDGES.len())];
            }
            2 => {
                let at = rng.gen_range(0..=len);
                let run: Vec<u8> = (0..rng.gen_range(1..=16)).map(|_| rng.gen()).collect();
                bytes.splice(at..at, run);
            }
            3 if len > 0 => {
                let from = rng.gen_range(0..len);
                let to = (from + rng.gen_range(1..=32)).min(len);
                bytes.drain(from..to);
            }
            4 if len > 0 => {
                let from = rng.gen_range(0..len);
                let to = (from + rng.gen_range(1..=32)).min(len);
                let run = bytes[from..to].to_vec();
                let at = rng.gen_range(0..=bytes.len());
                bytes.splice(at..at, run);
            }
            5 if !other.is_empty() => {
                let from = rng.gen_range(0..other.len());
                let to = (from + rng.gen_range(1..=64)).min(other.len());
                let at = rng.gen_range(0..=len);
                bytes.splice(at..at, other[from..to].iter().copied());
            }
            6 if len > 0 => bytes.truncate(rng.gen_range(0..len)),
            _ => {}
        }
    }
    bytes.truncate(INPUT_BYTES_MAX);
    bytes
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn mutations_change_inputs_within_the_bound_and_repeat_with_the_seed() {
        let input = vec![7u8; 100];
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..200)
                .map(|_| mutate(&mut rng, &input, b"other"))
                .collect::<Vec<_>>()
        };
        let first = run(1);
        assert_eq!(first, run(1), "the same seed makes the same inputs");
        assert!(first.iter().filter(|m| **m != input).count() > 150);
        assert!(first.iter().any(|m| m.len() > input.len()));
        assert!(first.iter().any(|m| m.len() < input.len()));
        let mut rng = StdRng::seed_from_u64(2);
        let big = vec![0u8; INPUT_BYTES_MAX];
        for _ in 0..50 {
            assert!(mutate(&mut rng, &big, &big).len() <= INPUT_BYTES_MAX);
        }
    }
}
