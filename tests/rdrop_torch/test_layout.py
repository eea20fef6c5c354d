"""rdrop_torch.layout: the interleaved copies of a batch, and the clear errors for inputs that do
not hold them (tests/rdrop_fairseq/test_architectures.py shows why fairseq needs this order)."""
import pytest
import torch

from rdrop_torch.layout import check_copies, duplicate_net_input


def test_duplicate_net_input_passes_other_entries_through_and_leaves_the_caller_alone():
    net_input = {
        "src_tokens": torch.arange(6).view(3, 2),
        "src_lengths": torch.tensor([2, 2, 1]),
        "extra": {"mask": torch.tensor([[True], [False], [True]]), "flag": "x"},
        "missing": None,
        "scalar": torch.tensor(7),  # no batch dimension
        "other_dim0": torch.zeros(5, 3),  # dim 0 is not the batch
        "count": 3,
    }
    before = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in net_input.items()}
    dup = duplicate_net_input(net_input, 2, 3)
    assert torch.equal(dup["src_tokens"], torch.tensor([[0, 1], [0, 1], [2, 3], [2, 3], [4, 5], [4, 5]]))
    assert torch.equal(dup["extra"]["mask"].view(-1), torch.tensor([True, True, False, False, True, True]))
    assert dup["extra"]["flag"] == "x" and dup["missing"] is None and dup["count"] == 3
    assert dup["scalar"] is net_input["scalar"] and dup["other_dim0"] is net_input["other_dim0"]
    assert dup is not net_input
    for k, v in before.items():
        assert torch.equal(net_input[k], v) if torch.is_tensor(v) else net_input[k] == v


def test_check_copies_names_what_is_wrong():
    logits = torch.zeros(6, 4, 5)
    check_copies(logits, torch.zeros(3, 4, dtype=torch.long), 2)  # one copy's target
    check_copies(logits, torch.zeros(6, 4, dtype=torch.long), 2)  # every copy's
    with pytest.raises(ValueError, match="not divisible by num_passes=4"):
        check_copies(logits, torch.zeros(6, 4, dtype=torch.long), 4)
    with pytest.raises(ValueError, match=r"expected \(2, 4\) \(one copy\) or \(6, 4\)"):
        check_copies(logits, torch.zeros(3, 4, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="must be a float tensor"):
        check_copies(logits.long(), torch.zeros(3, 4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="num_passes must be a positive int"):
        check_copies(logits, torch.zeros(6, 4, dtype=torch.long), 0)
