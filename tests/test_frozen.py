"""tufoci/frozen.py: the value classes the warm verify builds behave as the frozen dataclasses they replace."""

from __future__ import annotations

import copy
import pickle

import pytest

from tufoci.frozen import Frozen
from tufoci.reference import Reference, Repository, parse_reference
from tufoci.registry_config import Proxies, RegistryConfig, TLSFlags
from tufoci.state import Pin
from tufoci.verify_output import Outcome, VerifiedImage

IMAGE = VerifiedImage("r/a:1", "a:1", "r/s", "r/a", "sha256:" + "0" * 64, 10, None)
VALUES = [
    parse_reference("localhost:5000/acme/web:1.0"),
    Repository(None, "/tmp/layout"),
    Pin("r/acme", "r/acme/tuf", "0" * 64, "/root.json"),
    IMAGE,
    Outcome("r/a:1", image=IMAGE),
    TLSFlags(True, ca_file="/ca.pem"),
    RegistryConfig(TLSFlags(), (("r", TLSFlags(insecure=True)),), ("/certs.d",), (), Proxies("http://p:1")),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_equal_by_fields_hashable_immutable_copyable(value: Frozen):
    twin = copy.deepcopy(value)
    assert twin == value and hash(twin) == hash(value) and twin is not value
    assert pickle.loads(pickle.dumps(value)) == value
    assert repr(value).startswith(f"{type(value).__name__}(")
    assert list(value.as_dict()) == list(value.__slots__)
    first = value.__slots__[0]
    with pytest.raises(AttributeError):
        setattr(value, first, None)
    with pytest.raises(AttributeError):
        delattr(value, first)
    changed = value.replace(**{first: "other"})
    assert changed != value and getattr(changed, first) == "other" and getattr(value, first) != "other"


def test_another_class_with_the_same_fields_is_not_equal():
    assert Reference(Repository("r", "a")) != Repository("r", "a")
    assert TLSFlags() == TLSFlags(None, False) and TLSFlags() != Proxies()
    with pytest.raises(TypeError):
        TLSFlags().replace(no_such_field=1)
