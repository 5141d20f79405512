"""Signing a rendered notice: PAdES B-B with pyHanko, the office's key, the signature widget over the seal."""

from __future__ import annotations

import io

SIGNATURE_FIELD = "XiangFlowSeal"


def outside_event_loop(fn, *args, **kwargs):
    """Call fn, from a helper thread if this thread already runs an asyncio loop: pyHanko's sync API
    calls asyncio.run(), which refuses to nest (e.g. inside an async server or a Playwright test)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def sign_pdf(pdf: bytes, office, *, page: int | None, box: tuple[float, float, float, float] | None,
             reason: str, location: str) -> bytes:
    """Sign pdf with the office's key: PAdES B-B, the signature widget over the seal (if any)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields
    from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
    from pyhanko.stamp import StaticStampStyle

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    meta = PdfSignatureMetadata(field_name=SIGNATURE_FIELD, md_algorithm="sha256",
                                subfilter=fields.SigSeedSubFilter.PADES, reason=reason, location=location,
                                name=office.office_name)
    spec = fields.SigFieldSpec(SIGNATURE_FIELD, on_page=page or 0,
                               # pyHanko annotates the box as ints; PDF user-space coordinates may be fractional
                               box=tuple(round(v, 2) for v in box) if box else None)  # type: ignore[arg-type]
    # The seal is drawn by the page itself (so it also prints from merged files); the widget over it has
    # an empty appearance (pyHanko's text stamp would add an unembedded Courier) and shows the signature.
    signer = PdfSigner(meta, office.signer, stamp_style=StaticStampStyle(border_width=0),
                       new_field_spec=spec)
    reserve = 4096 + 2 * office.chain_der_bytes
    return outside_event_loop(signer.sign_pdf, writer, bytes_reserved=reserve).getvalue()
