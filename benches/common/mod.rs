//! Shared by the benchmarks: bigger maps made from a small real one.
#![allow(dead_code)]

use std::path::Path;

use dasgil::map::file::{write_map, MapFile, RawTensor};
use dasgil::retrieval::compress;
use safetensors::tensor::Dtype;

/// A map tiled to `entries` rows (with `compress`: also the compressed mode's codes): copy c > 0 is moved 1 km per copy along x and its
/// descriptors get uniform noise of up to the descriptors' mean magnitude.
pub fn tiled_map(base: &Path, out: &Path, entries: usize, compress: Option<(usize, usize)>) {
    let m = MapFile::open(base).unwrap();
    let (dtype, shape, bytes) = m.bytes("descriptors").unwrap();
    assert_eq!(dtype, Dtype::F32);
    let (n, dim) = (shape[0], shape[1]);
    let base_desc: &[f32] = bytemuck::cast_slice(bytes);
    let mean = base_desc.iter().map(|v| v.abs()).sum::<f32>() / base_desc.len() as f32;
    let mut desc = Vec::with_capacity(entries * dim);
    let mut poses = Vec::with_capacity(entries * 7);
    let mut times = Vec::new();
    let mut meta = m.meta.clone();
    // The tiled map has no yaw views: the benchmarks time the plain search.
    meta.yaw_views_deg.clear();
    meta.names.clear();
    meta.cameras.clear();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for r in 0..entries {
        let (c, i) = (r / n, r % n);
        for v in &base_desc[i * dim..(i + 1) * dim] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            desc.push(if c == 0 { *v } else { v + 2.0 * mean * u });
        }
        let p = m.pose(i);
        let t = p.translation.vector;
        let q = dasgil::geom::wxyz(&p.rotation);
        poses.extend([t.x + 1000.0 * c as f64, t.y, t.z, q[0], q[1], q[2], q[3]]);
        times.push(-1i64);
        meta.names.push(format!("{}#{c}", m.meta.names[i]));
        meta.cameras.push(m.meta.cameras[i].clone());
    }
    let mut tensors = vec![
        RawTensor::new("descriptors", Dtype::F32, vec![entries, dim], &desc),
        RawTensor::new("poses", Dtype::F64, vec![entries, 7], &poses),
        RawTensor::new("timestamps_us", Dtype::I64, vec![entries], &times),
    ];
    for name in m.tensor_names() {
        if name.contains("running_") {
            let (_, shape, bytes) = m.bytes(&name).unwrap();
            let v: &[f32] = bytemuck::cast_slice(bytes);
            tensors.push(RawTensor::new(&name, Dtype::F32, shape.to_vec(), v));
        }
    }
    meta.compression = compress.map(|(dims, shortlist)| {
        let (t, meta) = compress::map_tensors(&desc, entries, dim, dims, shortlist);
        tensors.extend(t);
        meta
    });
    write_map(out, &tensors, &mut meta).unwrap();
}
