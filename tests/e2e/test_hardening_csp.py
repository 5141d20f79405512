"""Issue 15: the studio's and the case viewer's bundles work under the Content-Security-Policy.

Chromium reports every blocked script, style or connection as a ``securitypolicyviolation`` event; the
listener is installed before any page script runs. The pages must render (diagram, modeler, form
editor) and report no violation."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.integration.studio_support import draft_with, edu_files, new_code

pytestmark = pytest.mark.e2e

LISTEN = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
  e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sourceFile || '')));
"""


def _violations(page) -> list[str]:
    return page.evaluate("window.__cspViolations")


def test_the_case_diagram_renders_under_the_csp_without_a_violation(db, page, login):
    page.context.add_init_script(LISTEN)
    case_id = db.start_case("demo_village")
    login(page, "demo_village")
    response = page.goto(f"/cases/{case_id}")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    diagram = page.locator("#diagram")
    expect(diagram).to_have_attribute("data-rendered", "true")
    expect(diagram.locator("svg").first).to_be_visible()
    assert _violations(page) == []
    # the policy is enforced and the listener sees it: an injected inline script is blocked and reported
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
                  " document.body.appendChild(s); }")
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.__ran") is None
    assert _violations(page)[0].startswith("script-src")


def test_the_studio_editor_works_under_the_csp_without_a_violation(db, page, login):
    page.context.add_init_script(LISTEN)
    draft_id = draft_with(db, edu_files(new_code()))
    login(page, "demo_admin")
    response = page.goto(f"/studio/drafts/{draft_id}")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    expect(page.locator(".djs-container").first).to_be_visible()
    page.get_by_test_id("studio-validate").click()  # a fetch to /studio/api/... (connect-src 'self')
    expect(page.get_by_test_id("studio-message")).not_to_be_empty()
    assert _violations(page) == []
