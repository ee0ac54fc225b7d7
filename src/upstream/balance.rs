//! Target choice within an upstream. Smooth weighted round robin (nginx's
//! algorithm) is run once at compile time to produce its whole cycle; the hot
//! path then reads one slot of that cycle per request, chosen by an atomic
//! counter: no lock, no per-pick arithmetic beyond a modulo.

/// The cycle nginx's smooth weighted round robin walks for `weights`, reduced
/// by their greatest common divisor. For weights 5,1,1 it is
/// `0 0 1 0 2 0 0`: the heavy target is spread out rather than bunched, which
/// is what makes it "smooth". Entries index `weights`.
pub fn smooth_schedule(weights: &[u32]) -> Box<[u16]> {
    let gcd = weights.iter().fold(0u32, |g, w| gcd(g, *w)).max(1);
    let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / gcd)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        schedule.push(best as u16);
    }
    schedule.into_boxed_slice()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_sequence() {
        // The example from nginx's commit introducing smooth WRR.
        assert_eq!(&*smooth_schedule(&[5, 1, 1]), &[0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn proportions_and_gcd() {
        let s = smooth_schedule(&[300, 100]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|i| **i == 0).count(), 3);
        assert_eq!(&*smooth_schedule(&[1]), &[0]);
        assert_eq!(&*smooth_schedule(&[2, 2]), &[0, 1]);
    }
}
