"""2D structure drawings (RDKit), as inline SVG for HTML pages (reports, the GUI)."""

from __future__ import annotations

from rdkit import Chem, rdBase
from rdkit.Chem.Draw import rdMolDraw2D


def structure_svg(smiles: str, width: int = 220, height: int = 160) -> str:
    """RDKit 2D drawing as inline SVG ('' when the SMILES does not parse)."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return ""
    d = rdMolDraw2D.MolDraw2DSVG(width, height)
    d.drawOptions().clearBackground = False
    rdMolDraw2D.PrepareAndDrawMolecule(d, mol)
    d.FinishDrawing()
    svg = d.GetDrawingText()
    return svg[svg.find("<svg"):]  # drop the XML declaration
