//! A uniform cell grid that lists the touching pairs of discs in O(N) per step.
//!
//! Cells are at least one diameter wide (with a margin for rounding), so two touching discs are
//! in the same or adjacent cells. The pairs come out sorted, (i, j) with i < j, which makes the
//! result independent of the grid's resolution and equal to a check of every pair in order.

/// Relative margin added to the diameter when sizing cells, far above the rounding of the
/// positions times the cell count, so a pair that touches is never two cells apart.
const CELL_MARGIN: f64 = 1e-6;

/// Cells per disc at most, so tiny radii do not allocate a grid far larger than the discs.
const MAX_CELLS_PER_DISC: f64 = 1.0;

/// The grid and its buffers, kept across steps so a step allocates nothing.
#[derive(Clone, Debug)]
pub(super) struct CellGrid {
    cells_per_side: usize,
    /// Cell of each disc.
    cell_of: Vec<u32>,
    /// Disc indices grouped by cell, ascending within a cell.
    members: Vec<u32>,
    /// `members[start[c]..start[c + 1]]` are the discs of cell c.
    start: Vec<u32>,
}

impl CellGrid {
    /// A grid for `particles` discs of `radius` in the unit box.
    pub(super) fn new(particles: usize, radius: f64) -> Self {
        let by_size = 1.0 / (2.0 * radius * (1.0 + CELL_MARGIN));
        let by_count = (particles as f64 * MAX_CELLS_PER_DISC).sqrt().ceil();
        // `as` saturates; both bounds are finite and positive for validated parameters.
        let cells_per_side = by_size.min(by_count).floor().max(1.0) as usize;
        Self {
            cells_per_side,
            cell_of: vec![0; particles],
            members: vec![0; particles],
            start: vec![0; cells_per_side * cells_per_side + 1],
        }
    }

    /// Replaces `pairs` with every (i, j), i < j, whose centres are closer than the diameter
    /// (`dx² + dy² < contact_squared`, with d = position j − position i), sorted.
    pub(super) fn touching_pairs(
        &mut self,
        positions: &[[f64; 2]],
        contact_squared: f64,
        pairs: &mut Vec<(u32, u32)>,
    ) {
        pairs.clear();
        self.bin(positions);
        let side = self.cells_per_side;
        for cy in 0..side {
            for cx in 0..side {
                let here = self.cell(cx, cy);
                for (offset, &i) in here.iter().enumerate() {
                    for &j in &here[offset + 1..] {
                        push_if_touching(positions, contact_squared, i, j, pairs);
                    }
                }
                // Half of the eight neighbours, so each pair of cells is visited once.
                for (nx, ny) in [(1, -1), (1, 0), (1, 1), (0, 1)] {
                    let (Some(ox), Some(oy)) =
                        (cx.checked_add_signed(nx), cy.checked_add_signed(ny))
                    else {
                        continue;
                    };
                    if ox >= side || oy >= side {
                        continue;
                    }
                    for &i in here {
                        for &j in self.cell(ox, oy) {
                            push_if_touching(positions, contact_squared, i, j, pairs);
                        }
                    }
                }
            }
        }
        pairs.sort_unstable();
    }

    fn cell(&self, cx: usize, cy: usize) -> &[u32] {
        let index = cy * self.cells_per_side + cx;
        &self.members[self.start[index] as usize..self.start[index + 1] as usize]
    }

    /// Counting sort of the discs by cell; within a cell, indices stay ascending.
    fn bin(&mut self, positions: &[[f64; 2]]) {
        let side = self.cells_per_side;
        let scale = side as f64;
        self.start.fill(0);
        for (cell, &[x, y]) in self.cell_of.iter_mut().zip(positions) {
            // Positions lie in [radius, 1 − radius]; the `min` keeps x = 1 in the last cell.
            let cx = ((x * scale) as usize).min(side - 1);
            let cy = ((y * scale) as usize).min(side - 1);
            *cell = (cy * side + cx) as u32;
            self.start[cy * side + cx + 1] += 1;
        }
        for index in 1..self.start.len() {
            self.start[index] += self.start[index - 1];
        }
        let mut next = self.start.clone();
        for (disc, &cell) in self.cell_of.iter().enumerate() {
            let slot = &mut next[cell as usize];
            self.members[*slot as usize] = disc as u32;
            *slot += 1;
        }
    }
}

fn push_if_touching(
    positions: &[[f64; 2]],
    contact_squared: f64,
    a: u32,
    b: u32,
    pairs: &mut Vec<(u32, u32)>,
) {
    let (i, j) = if a < b { (a, b) } else { (b, a) };
    let [xi, yi] = positions[i as usize];
    let [xj, yj] = positions[j as usize];
    let (dx, dy) = (xj - xi, yj - yi);
    if dx * dx + dy * dy < contact_squared {
        pairs.push((i, j));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_across_cell_edges_and_corners_are_found_once() {
        // Radius 0.1 and five discs: 3 × 3 cells of 1/3; four discs around the corner (1/3, 1/3)
        // fall in four different cells.
        let positions = [
            [0.32, 0.32],
            [0.34, 0.34],
            [0.34, 0.32],
            [0.9, 0.9],
            [0.32, 0.34],
        ];
        let mut grid = CellGrid::new(positions.len(), 0.1);
        let mut pairs = Vec::new();
        grid.touching_pairs(&positions, 0.04, &mut pairs);
        assert_eq!(pairs, [(0, 1), (0, 2), (0, 4), (1, 2), (1, 4), (2, 4)]);
    }
}
