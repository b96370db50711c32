//! One training step (forward, backward, Adam update) of each architecture on the CPU
//! (burn's flex backend). Throughput is reported in samples per second.

use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use facebatch::train::Stepper;
use facebatch::train::net::{Arch, Net};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    for arch in [Arch::Compact, Arch::Seed] {
        for batch in [16usize, 32] {
            let device = Device::default().autodiff();
            device.seed(1);
            let (h, w) = arch.input_size();
            let mut net = Some(Net::new(arch, 2, &device));
            let mut stepper = Stepper::new(1e-4, 0.05, &device);
            let labels: Vec<usize> = (0..batch).map(|i| i % 2).collect();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("{}/batch{batch}", arch.name()), |b| {
                b.iter(|| {
                    let x = Tensor::<4>::random(
                        [batch, 3, h as usize, w as usize],
                        Distribution::Default,
                        &device,
                    );
                    let (next, loss, _) =
                        stepper.step(net.take().unwrap(), x, &labels, 1e-3, &device);
                    net = Some(next);
                    loss
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
