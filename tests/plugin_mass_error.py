"""An out-of-tree method, as another package would ship it (loaded through the
``msid.methods`` entry-point group in tests/test_cli.py): candidates ranked by how close their
monoisotopic neutral mass is to the query's."""

from __future__ import annotations

import numpy as np

from msid.chem.adducts import neutral_mass
from msid.methods import MethodResources, Query, register
from msid.rankings import RankedCandidate


class MassError:
    name = "mass-error"
    needs_candidates = True
    needs_library = False

    def rank(self, query: Query, candidates) -> list[RankedCandidate]:
        if not candidates:
            return []
        m = neutral_mass(query.precursor_mz, query.adduct, query.ion_mode, query.charge)
        err = np.array([abs(c.exact_mass - m) for c in candidates])
        order = np.argsort(err, kind="stable")
        return [RankedCandidate(candidates[i].smiles_flat, candidates[i].inchikey,
                                float(-err[i])) for i in order]


@register("mass-error")
def _mass_error(res: MethodResources) -> MassError:
    return MassError()
