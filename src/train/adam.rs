//! Adam (Kingma & Ba), as `torch.optim.Adam` computes it (no weight decay, no amsgrad), with its
//! state (first and second moments, step count) in named tensors so a checkpoint can hold it and
//! a resumed run continues exactly.

use std::collections::BTreeMap;

use tch::{nn, Kind, Tensor};

pub struct Adam {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    /// Steps taken.
    pub step: u64,
    /// Trainable variables by name, with their moments.
    params: BTreeMap<String, (Tensor, Tensor, Tensor)>,
}

impl Adam {
    /// Adam over every trainable variable of `vs` (BatchNorm running statistics are not).
    pub fn new(vs: &nn::VarStore, lr: f64, betas: [f64; 2]) -> Self {
        let params = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, t)| {
                let m = t.zeros_like().detach();
                let v = t.zeros_like().detach();
                (name, (t, m, v))
            })
            .collect();
        Self {
            lr,
            betas,
            eps: 1e-8,
            step: 0,
            params,
        }
    }

    pub fn zero_grad(&mut self) {
        for (p, _, _) in self.params.values_mut() {
            p.zero_grad();
        }
    }

    /// One update with the gradients in the variables.
    pub fn step(&mut self) {
        self.step += 1;
        let [b1, b2] = self.betas;
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2 = 1.0 - b2.powi(self.step as i32);
        let step_size = self.lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        tch::no_grad(|| {
            for (p, m, v) in self.params.values_mut() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.lerp_(&g, 1.0 - b1);
                let _ = v.g_mul_scalar_(b2).addcmul_(&g, &g.g_mul_scalar(1.0 - b2));
                let denom = v.sqrt() / bc2_sqrt + self.eps;
                let _ = p.addcdiv_(&(m.g_mul_scalar(-step_size)), &denom);
            }
        });
    }

    /// The moments as named tensors (`m.<name>`, `v.<name>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() * 2);
        for (name, (_, m, v)) in &self.params {
            out.push((format!("m.{name}"), m.shallow_clone()));
            out.push((format!("v.{name}"), v.shallow_clone()));
        }
        out
    }

    /// Restores the moments written by [`Adam::state`]; every one must be there.
    pub fn load_state(
        &mut self,
        tensors: &BTreeMap<String, Tensor>,
        step: u64,
    ) -> Result<(), String> {
        tch::no_grad(|| {
            for (name, (p, m, v)) in self.params.iter_mut() {
                for (prefix, dst) in [("m", &mut *m), ("v", &mut *v)] {
                    let key = format!("{prefix}.{name}");
                    let src = tensors
                        .get(&key)
                        .ok_or_else(|| format!("optimizer state `{key}` is missing"))?;
                    if src.size() != p.size() || src.kind() != Kind::Float {
                        return Err(format!(
                            "optimizer state `{key}`: expected {:?} float, found {:?} {:?}",
                            p.size(),
                            src.size(),
                            src.kind()
                        ));
                    }
                    dst.copy_(src);
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Two steps on a quadratic equal the hand-computed Adam updates.
    #[test]
    fn matches_the_adam_update_rule() {
        let vs = nn::VarStore::new(Device::Cpu);
        let x = vs.root().var("x", &[1], nn::Init::Const(1.0));
        let mut opt = Adam::new(&vs, 0.1, [0.9, 0.999]);
        let (mut m, mut v, mut p) = (0.0f64, 0.0f64, 1.0f64);
        for t in 1..=2 {
            opt.zero_grad();
            (&x * &x).sum(Kind::Float).backward();
            opt.step();
            let g = 2.0 * p;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let mh = m / (1.0 - 0.9f64.powi(t));
            let denom = v.sqrt() / (1.0 - 0.999f64.powi(t)).sqrt() + 1e-8;
            p -= 0.1 * mh / denom;
            assert!((x.double_value(&[0]) - p).abs() < 1e-6, "step {t}");
        }
        // State round-trips.
        let state: BTreeMap<String, Tensor> = opt.state().into_iter().collect();
        let mut other = Adam::new(&vs, 0.1, [0.9, 0.999]);
        other.load_state(&state, opt.step).unwrap();
        assert_eq!(other.step, 2);
        assert!(other.state()[0].1.equal(&opt.state()[0].1));
        let mut missing = state;
        missing.remove("v.x");
        let e = other.load_state(&missing, 2).unwrap_err();
        assert_eq!(e, "optimizer state `v.x` is missing");
    }
}
