//! One matmul.wgsl product described as a value: its sizes, its operands as strided views, and
//! the dispatches it becomes (row blocks past a grid dimension, chunks of K past the loop budget,
//! the `matmul4` variant where the operands allow vec4 loads).

use crate::gpu::kernels::{ACCUMULATE, EPILOGUE, MatmulParams, MatmulVariant, Products};
use crate::gpu::plan::{K_CHUNK, MAX_GROUPS};

/// A matrix operand of matmul.wgsl: element (i, p) at `offset + i * row_stride + p * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Operand {
    pub(crate) offset: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

/// A row-major matrix at `offset` with rows of `width` elements.
pub(crate) fn rows(offset: usize, width: usize) -> Operand {
    Operand {
        offset,
        row_stride: width,
        col_stride: 1,
    }
}

/// The transpose of a row-major matrix at `offset` with rows of `width` elements.
pub(crate) fn cols(offset: usize, width: usize) -> Operand {
    Operand {
        offset,
        row_stride: 1,
        col_stride: width,
    }
}

/// The sizes and operands of one matmul.wgsl product: C (m, n) = A (m, k) · B (k, n).
#[derive(Clone, Copy)]
pub(crate) struct Product {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) a: Operand,
    pub(crate) b: Operand,
    /// C's offset and row stride.
    pub(crate) c: (usize, usize),
    pub(crate) flags: u32,
    pub(crate) addend_offset: usize,
    /// Workgroups along K, each summing its own slice (see matmul.wgsl, split K).
    pub(crate) splits: usize,
    /// Elements between the partial products of two splits (M·N of the whole product).
    pub(crate) split_stride: usize,
}

impl Product {
    pub(crate) fn new(
        m: usize,
        n: usize,
        k: usize,
        a: Operand,
        b: Operand,
        c: (usize, usize),
    ) -> Self {
        Self {
            m,
            n,
            k,
            a,
            b,
            c,
            flags: 0,
            addend_offset: 0,
            splits: 1,
            split_stride: m * n,
        }
    }

    /// The slice of K that each split sums.
    pub(crate) fn k_split(&self) -> usize {
        self.k.div_ceil(self.splits).next_multiple_of(4).max(1)
    }

    /// The product as blocks of at most [`MAX_GROUPS`] · 32 rows, each a product of its own
    /// (one block unless M needs more workgroups than a grid dimension holds).
    pub(crate) fn row_blocks(&self) -> Vec<Product> {
        let per_block = MAX_GROUPS * 32;
        (0..self.m.div_ceil(per_block).max(1))
            .map(|i| {
                let i0 = i * per_block;
                let shift = i0 * self.c.1;
                Product {
                    m: (self.m - i0).min(per_block),
                    a: Operand {
                        offset: self.a.offset + i0 * self.a.row_stride,
                        ..self.a
                    },
                    c: (self.c.0 + shift, self.c.1),
                    ..*self
                }
            })
            .collect()
    }

    /// The parameters of the dispatches that sum K in chunks of at most [`K_CHUNK`]: each after
    /// the first continues the sums the one before it stored, and only the last applies the
    /// bias and the epilogue.
    pub(crate) fn chunks(&self) -> Vec<MatmulParams> {
        let n = self.k_split().div_ceil(K_CHUNK).max(1);
        (0..n)
            .map(|i| {
                let mut flags = self.flags;
                if i + 1 < n {
                    flags &= !EPILOGUE;
                }
                if i > 0 {
                    flags |= ACCUMULATE;
                }
                MatmulParams {
                    flags,
                    k_begin: (i * K_CHUNK) as u32,
                    ..self.params()
                }
            })
            .collect()
    }

    pub(crate) fn params(&self) -> MatmulParams {
        MatmulParams {
            m: self.m as u32,
            n: self.n as u32,
            k: self.k as u32,
            flags: self.flags,
            a_offset: self.a.offset as u32,
            a_row_stride: self.a.row_stride as u32,
            a_col_stride: self.a.col_stride as u32,
            b_offset: self.b.offset as u32,
            b_row_stride: self.b.row_stride as u32,
            b_col_stride: self.b.col_stride as u32,
            c_offset: self.c.0 as u32,
            c_row_stride: self.c.1 as u32,
            addend_offset: self.addend_offset as u32,
            k_split: self.k_split() as u32,
            c_split_stride: self.split_stride as u32,
            k_begin: 0,
            k_len: K_CHUNK as u32,
            _pad: [0; 3],
        }
    }

    /// The matmul.wgsl variant for this product on `products`: the tiled kernel, or `matmul4`
    /// when A and B are aligned to vec4s.
    pub(crate) fn variant_on(&self, products: Products, one_hot_b: bool) -> MatmulVariant {
        match products {
            Products::Tiled => MatmulVariant {
                one_hot_b,
                tiled: true,
                ..MatmulVariant::default()
            },
            Products::Blocked => self.variant(one_hot_b),
        }
    }

    /// The matmul.wgsl variant for this product: `matmul4` when A and B are aligned to vec4s.
    pub(crate) fn variant(&self, one_hot_b: bool) -> MatmulVariant {
        let aligned =
            |o: &Operand, strided: usize| o.offset.is_multiple_of(4) && strided.is_multiple_of(4);
        let b_rows = one_hot_b || (self.b.col_stride == 1 && aligned(&self.b, self.b.row_stride));
        let a_rows = self.a.col_stride == 1
            && aligned(&self.a, self.a.row_stride)
            && self.k.is_multiple_of(4);
        let a_cols = self.a.row_stride == 1
            && aligned(&self.a, self.a.col_stride)
            && self.m.is_multiple_of(4);
        // The one-hot B is read in the column-major path only.
        let use_cols = a_cols && (one_hot_b || !a_rows);
        let vec4 = b_rows && (use_cols || (a_rows && !one_hot_b));
        MatmulVariant {
            vec4,
            one_hot_b,
            a_cols: vec4 && use_cols,
            tiled: false,
        }
    }

    /// The workgroups of the product on a variant: one per tile of C, per split.
    pub(crate) fn groups(&self, variant: MatmulVariant) -> (u32, u32, u32) {
        let tile = variant.tile();
        (
            self.n.div_ceil(tile) as u32,
            self.m.div_ceil(tile) as u32,
            self.splits as u32,
        )
    }
}

/// Workgroup layers for a weight gradient summed over `rows` rows into `outputs` elements: one
/// per 512 rows, at most 8, and their partial sums within `limit` bytes. Long sums split this way
/// keep a hardware GPU's cores busy, where a weight gradient otherwise has few workgroups, each
/// looping over every row.
pub(crate) fn weight_gradient_splits(rows: usize, outputs: usize, limit: u64) -> usize {
    let mut splits = (rows / 512).clamp(1, 8);
    while splits > 1 && (splits * outputs * 4) as u64 > limit {
        splits -= 1;
    }
    splits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::ADD_BIAS;
    use crate::gpu::plan::{grid_1d, grid_rows};

    #[test]
    fn grids_stay_within_a_dimension() {
        assert_eq!(grid_rows(1), (1, 1, 1));
        assert_eq!(grid_rows(65_535), (65_535, 1, 1));
        assert_eq!(grid_rows(70_000), (65_535, 2, 1));
        let (x, y, _) = grid_1d(65_535 * 64 * 3 + 1);
        assert!(x as usize <= MAX_GROUPS && (x as usize) * (y as usize) * 64 > 65_535 * 64 * 3);
    }

    #[test]
    fn long_products_split_into_row_blocks_and_chunks_of_k() {
        // 3,000,000 rows: two blocks, the second starting where the first ends in A and C, with
        // the bias left where it is.
        let mut p = Product::new(3_000_000, 8, 8, rows(0, 8), rows(0, 8), (0, 8));
        p.flags = ADD_BIAS;
        p.addend_offset = 5;
        let blocks = p.row_blocks();
        let per = MAX_GROUPS * 32;
        assert_eq!(blocks.len(), 2);
        assert_eq!((blocks[0].m, blocks[1].m), (per, 3_000_000 - per));
        assert_eq!(blocks[1].a.offset, per * 8);
        assert_eq!(blocks[1].c.0, per * 8);
        assert_eq!(blocks[1].addend_offset, 5);
        let v = MatmulVariant::default();
        assert!(blocks.iter().all(|b| b.groups(v).1 as usize <= MAX_GROUPS));
        // K = 20,000 in three chunks: only the first starts from zero, only the last applies the
        // epilogue, and together they cover K once.
        let mut p = Product::new(4, 4, 20_000, rows(0, 20_000), rows(0, 4), (0, 4));
        p.flags = ADD_BIAS;
        let chunks = p.chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].flags & ACCUMULATE, 0);
        assert!(chunks[1..].iter().all(|c| c.flags & ACCUMULATE != 0));
        assert!(chunks[..2].iter().all(|c| c.flags & EPILOGUE == 0));
        assert_eq!(chunks[2].flags & EPILOGUE, ADD_BIAS);
        let covered: u32 = chunks
            .iter()
            .map(|c| c.k_len.min(c.k - c.k_begin.min(c.k)))
            .sum();
        assert_eq!(covered, 20_000);
    }
}
