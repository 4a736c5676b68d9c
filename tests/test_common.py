"""tasks/common.py: eval prompts are read with clear errors for bad rows."""
import pytest

from tasks.common import StageError, read_eval_prompts


def write(tmp_path, text):
    path = tmp_path / "eval.csv"
    path.write_text(text)
    return path


def test_prompts_of_unselected_paper_motions_are_left_out(tmp_path):
    path = write(tmp_path, "motion,prompt\nrain,rain on a city\nhelicopter,a helicopter\nrain,rain at night\n")
    assert read_eval_prompts(path, ["rain"]) == {"rain": ["rain on a city", "rain at night"]}


def test_unknown_motion_names_the_line(tmp_path):
    path = write(tmp_path, "motion,prompt\nrain,rain on a city\nhelicoptr,a helicopter\n")
    with pytest.raises(StageError, match=r"eval.csv:3: prompt for unknown motion 'helicoptr'"):
        read_eval_prompts(path, ["rain", "helicopter"])


def test_missing_columns_empty_prompt_and_missing_file(tmp_path):
    with pytest.raises(StageError, match="columns motion,prompt"):
        read_eval_prompts(write(tmp_path, "name,text\nrain,x\n"), ["rain"])
    with pytest.raises(StageError, match="eval.csv:2: empty prompt"):
        read_eval_prompts(write(tmp_path, "motion,prompt\nrain,\n"), ["rain"])
    with pytest.raises(StageError, match="not found"):
        read_eval_prompts(tmp_path / "none.csv", ["rain"])


def test_the_papers_eval_set_has_48_prompts_over_8_motions():
    from pathlib import Path

    prompts = read_eval_prompts(Path(__file__).resolve().parent.parent / "data/prompts/eval.csv", None)
    assert len(prompts) == 8 and all(len(p) == 6 for p in prompts.values())


def test_cuda_without_a_gpu_is_a_params_error_naming_the_field():
    import torch

    from lamp_model.config import ParamsError
    from lamp_model.loading import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ParamsError, match="model.device = 'cuda'.*set model.device: cpu or auto"):
        resolve_device("cuda")
