"""The benchmark data sets ponder knows: their files with sizes and sha256, where each came from,
its license, and whether it ships with the package.

A set is a folder named after it (`gsm8k/test.jsonl`, …), laid out as in the project's shared
data folder. Whatever the source of a set (the package, `ponder data pull` from the hub or from
a folder, `$PONDER_DATA_DIR`), its files are the bytes listed here; `ponder data pull` checks
every file's sha256 before it keeps it. Provenance in full: `ponder/data/README.md`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DataFile(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str  # inside the set's folder
    size: int
    sha256: str


class HubFile(BaseModel):
    """A file on the Hugging Face hub holding exactly a set's file (same sha256)."""

    model_config = ConfigDict(frozen=True)
    repo: str  # a dataset repository
    revision: str
    filename: str


class DataSet(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    files: tuple[DataFile, ...]
    license: str
    source: str
    bundled: bool = False
    # license and notice files kept beside the data (copied when the source has them)
    license_files: tuple[str, ...] = ("LICENSE",)
    # file name -> a hub file with the same bytes, where one is known
    hub: dict[str, HubFile] = {}

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


_QWEN = "QwenLM/Qwen2.5-Math @ a45202bd16f1 : evaluation/data/{}/test.jsonl"
_QWEN_MIT = "MIT (Qwen2.5-Math evaluation harness); "


def _qwen(name: str, size: int, sha256: str, upstream: str) -> DataSet:
    return DataSet(
        name=name,
        files=(DataFile(name="test.jsonl", size=size, sha256=sha256),),
        license=_QWEN_MIT + upstream,
        source=_QWEN.format(name),
    )


SETS: dict[str, DataSet] = {
    s.name: s
    for s in [
        DataSet(
            name="gsm8k",
            files=(
                DataFile(
                    name="test.jsonl",
                    size=749_738,
                    sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
                ),
                DataFile(
                    name="train.jsonl",
                    size=4_166_206,
                    sha256="17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
                ),
            ),
            license="MIT",
            source="openai/grade-school-math @ 3101c7d50724 : grade_school_math/data/",
            bundled=True,
        ),
        DataSet(
            name="math500",
            files=(
                DataFile(
                    name="test.jsonl",
                    size=446_564,
                    sha256="35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
                ),
            ),
            license="MIT",
            source="openai/prm800k @ 7ecc794703b2 : prm800k/math_splits/test.jsonl (bytes from "
            "ZubinGou/math-evaluation-harness @ db77bc6bb2a1 : data/math_oai/test.jsonl)",
            bundled=True,
            license_files=("LICENSE", "LICENSE.math-evaluation-harness"),
            hub={
                "test.jsonl": HubFile(
                    repo="HuggingFaceH4/MATH-500",
                    revision="6e4ed1a2a79af7d8630a6b768ec859cb5af4d3be",
                    filename="test.jsonl",
                )
            },
        ),
        DataSet(
            name="math",
            files=(
                DataFile(
                    name="test.jsonl",
                    size=4_101_364,
                    sha256="3371949f33dd702d04b43fddd7d53a028de0aaca0e76abb1b875a050297b3aa4",
                ),
            ),
            license="MIT",
            source="ZubinGou/math-evaluation-harness @ db77bc6bb2a1 : data/math/test.jsonl",
        ),
        _qwen(
            "aime24",
            156_944,
            "af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac",
            "problems: MAA (AoPS wiki)",
        ),
        _qwen(
            "amc23",
            27_631,
            "43707e1ca784602d8479de24ee8ce36609dbebc46dd152b0b12a46611aa898a4",
            "problems: MAA (AoPS wiki)",
        ),
        _qwen(
            "minerva_math",
            247_267,
            "0e656b430d3a0a1dab6aa853f453ba3805e28e2cabe4fc72486a897cc09d8ba2",
            "upstream: MIT OpenCourseWare, CC BY-NC-SA",
        ),
        _qwen(
            "olympiadbench",
            1_493_870,
            "bb8c1e38a16ea9eacb77530315a674d883f267fbff79183effc53681b4fcc416",
            "upstream: OlympiadBench, Apache-2.0",
        ),
        _qwen(
            "college_math",
            1_188_309,
            "91131bc4a355b884fc63ef7c4f048c35adb030004a4cb07b1475698f120aa4a6",
            "upstream: a license per record, some non-commercial",
        ),
        _qwen(
            "gaokao2023en",
            139_740,
            "654d8f49bdb86f578c171dbc0dd8f4d9f1bf3d7a7438f60359fda7d643df4951",
            "upstream: terms unknown",
        ),
        _qwen(
            "gaokao2024_I",
            5_539,
            "9a5bb19a1b767d5cd48be164efc048351784580142b0dd84a6ad7e8ec3ece18e",
            "upstream: terms unknown",
        ),
        _qwen(
            "gaokao2024_II",
            6_078,
            "55cc8057d85c5bdf0a993cda2d37b3aee6f733761c70b101a6d086d213732acc",
            "upstream: terms unknown",
        ),
        _qwen(
            "gaokao2024_mix",
            26_662,
            "d00cf32da2252408cb7abd49e8e13adcb801dc08e74a9bd57d1df92c0416935c",
            "upstream: terms unknown",
        ),
        _qwen(
            "gaokao_math_cloze",
            38_690,
            "088675c147794970a3ed25c7147a3bbc59715d6813837d5f483f46dcb1b5008d",
            "upstream: GAOKAO-Bench, Apache-2.0",
        ),
        _qwen(
            "gaokao_math_qa",
            137_661,
            "4717f8ab70130e277da9056261e3d63f1f6b062049b97b2d204299917da656fb",
            "upstream: GAOKAO-Bench, Apache-2.0",
        ),
        _qwen(
            "cn_middle_school",
            27_321,
            "d768b866b72ecd1ddcaa84acb56d7bd70d759fbb2cdb0c2bc63f1e5befdb58d6",
            "upstream: terms unknown",
        ),
        _qwen(
            "cmath",
            119_574,
            "e2ceabf05d10b37f207eaebbe8db24dbfc961e1a4f07337d2fc4db42a7f44fdb",
            "upstream: CMATH, CC BY 4.0",
        ),
        _qwen(
            "carp_en",
            1_278_970,
            "f93f00bed6273d7f6795f674d8458662be596950f81ef433d8b80592ba3aae64",
            "upstream: terms unknown",
        ),
        _qwen(
            "aqua",
            130_192,
            "de41581881ef95c5588c44ddc701c77fd480839241dd422a0d181262af24520c",
            "upstream: AQuA-RAT, Apache-2.0",
        ).model_copy(update={"bundled": True}),
        _qwen(
            "sat_math",
            14_128,
            "96720a1dc496ea72f80db55250290cf9c48e95b657ac2183b7deb1dc4627351f",
            "upstream: AGIEval, MIT",
        ),
        _qwen(
            "mmlu_stem",
            1_024_981,
            "fd7c16f96067d285638abb5aaef9cd8a063b11454e14cb64df93141a58691478",
            "upstream: MMLU, MIT",
        ).model_copy(update={"bundled": True}),
        DataSet(
            name="humaneval",
            files=(
                DataFile(
                    name="HumanEval.jsonl",
                    size=214_438,
                    sha256="1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2",
                ),
            ),
            license="MIT",
            source="openai/human-eval @ 6d43fb980f9f : data/HumanEval.jsonl.gz (decompressed)",
            bundled=True,  # the grading tests read it
        ),
        DataSet(
            name="mbpp",
            files=(
                DataFile(
                    name="mbpp.jsonl",
                    size=563_743,
                    sha256="ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
                ),
            ),
            license="CC BY 4.0 (data); Apache-2.0 (the copy's repository)",
            source="google-research mbpp/mbpp.jsonl, bytes from ScalingIntelligence/Archon @ "
            "07114d77af28 : src/archon/benchmarks/mbpp/data/mbpp.jsonl",
            bundled=True,
            license_files=("LICENSE", "LICENSE.Archon-Apache-2.0"),
        ),
        DataSet(
            name="game24",
            files=(
                DataFile(
                    name="24.csv",
                    size=48_235,
                    sha256="b9f12b3e36d987a3c714c4cef17d89a137d7c59da26532fcfb93b4821d8111b5",
                ),
            ),
            license="MIT",
            source="princeton-nlp/tree-of-thought-llm @ ab400345c5ea : src/tot/data/24/24.csv",
            bundled=True,
        ),
        DataSet(
            name="countdown",
            files=(
                DataFile(
                    name="countdown_cd3_test.jsonl",
                    size=9_636,
                    sha256="9916f614621e26fb2b035ed4ea641e35e4fff0d533bb9b9c7bcaaa61017d88c6",
                ),
            ),
            license="Apache-2.0",
            source="dllm-reasoning/d1 @ 837888f22c21 : dataset/countdown_cd3_test.jsonl",
            bundled=True,
        ),
    ]
}
