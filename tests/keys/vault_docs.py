"""The policies of docs/vault.md, for tests that run tokend (or an operator) under them."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from tests.support.bao import BaoDevServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "vault.md"


def doc_blocks() -> list[str]:
    """Every ```hcl block of docs/vault.md, in order."""
    return re.findall(r"```hcl\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def doc_block(first_line: str) -> str:
    """The one block that starts with `first_line` (its leading comment)."""
    (found,) = [block for block in doc_blocks() if block.startswith(first_line)]
    return found


def token_with(bao: BaoDevServer, name: str, *blocks: str) -> str:
    """A token holding exactly `blocks`, for key `name` instead of the documented `tokend`."""
    root = bao.client()
    policy = f"policy-{uuid.uuid4().hex[:8]}"
    text = "\n".join(blocks).replace("keys/tokend", f"keys/{name}").replace(
        "sign/tokend", f"sign/{name}")
    root.sys.create_or_update_policy(policy, text)
    answer = root.auth.token.create(policies=[policy], ttl="10m", no_default_policy=True)
    return str(answer["auth"]["client_token"])
