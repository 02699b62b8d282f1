"""What the workflow needs to know of tests/plugin_mass_error.py's method, declared as another
package would (entry-point group ``msid.method_specs``): a light module, read on every start."""

from msid.method_kinds import MethodSpec

MASS_ERROR = MethodSpec("small_molecule", needs_candidates=True, benchmark=True)
NOT_A_SPEC = {"kind": "small_molecule"}
