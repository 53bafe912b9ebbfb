"""Entity resolution against the claims simulator's own noise: every way the book
writes one person's phone, address, account and name resolves to one key."""

from __future__ import annotations

import numpy as np

from fraudring.resolve import name_signature, normalize_address, normalize_bank, normalize_phone, person_key
from simulators.claims import Entities, noisy_account, noisy_address, noisy_name, noisy_phone


def test_every_noisy_spelling_of_a_book_person_resolves_to_one_key():
    rng = np.random.default_rng(0)
    ents = Entities(rng)
    people = [ents.person() for _ in range(200)]
    for p in people:
        variants = range(25)
        assert {normalize_phone(noisy_phone(rng, p.phone)) for _ in variants} == {p.phone}
        assert len({normalize_address(noisy_address(rng, p.address)) for _ in variants}) == 1
        assert {normalize_bank(noisy_account(rng, p.bank_account)) for _ in variants} == {p.bank_account}
        assert len({name_signature(noisy_name(rng, p.name)) for _ in variants}) == 1
        assert len({person_key(noisy_name(rng, p.name), phone=noisy_phone(rng, p.phone)) for _ in variants}) == 1


def test_different_book_people_keep_different_keys():
    ents = Entities(np.random.default_rng(1))
    people = [ents.person() for _ in range(500)]
    assert len({person_key(p.name, phone=p.phone) for p in people}) == 500
    assert len({normalize_address(p.address) for p in people}) == len({p.address for p in people})
