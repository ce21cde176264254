"""ICL prompt builder: retrieval, LaMP templates, chat template, and a budget that never cuts the query."""
import warnings

import pytest

from lib.core import models
from lib.evaluation import icl

from _tiny import query, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def ntok(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_query_never_truncated_for_any_budget(tok):
    q = query(n_profile=6)
    zero = ntok(tok, models.prompt_text(tok, q["prompt"]))
    seen = set()
    for budget in range(zero, zero + 120, 3):
        p = icl.build_prompt(q, tok, k=4, max_tokens=budget)
        assert p.text.rstrip().endswith(q["prompt"] + " <|assistant|>")  # the whole query, last
        assert ntok(tok, p.text) <= budget
        assert p.n_examples == len(p.example_ids) <= 4
        seen.add(p.n_examples)
    assert seen == {0, 1, 2, 3, 4}  # examples are dropped, not the query, as the budget shrinks


def test_query_alone_over_budget_warns_and_keeps_query(tok):
    q = query()
    with pytest.warns(UserWarning, match="never truncated"):
        p = icl.build_prompt(q, tok, k=3, max_tokens=5)
    assert p.n_examples == 0 and p.text == models.prompt_text(tok, q["prompt"]) and p.warning


def test_empty_profile_warns_zero_shot(tok):
    q = query(n_profile=0)
    with pytest.warns(UserWarning, match="empty profile"):
        p = icl.build_prompt(q, tok, k=2)
    assert p.message == q["prompt"] and p.n_examples == 0


def test_k0_is_the_base_prompt_without_warning(tok):
    q = query()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = icl.build_prompt(q, tok, k=0)
    assert p.text == models.prompt_text(tok, q["prompt"])


def test_lamp_templates(tok):
    """LaMP's own strings (LaMP-Benchmark/LaMP LaMP/prompts/prompts.py), written out by hand, trailing spaces included."""
    ex = [{"id": "1", "source": "text one", "output": "Title One"}, {"id": "2", "source": "t2", "output": "T2"}]
    assert icl.render("LaMP-4", ex, "Q") == '"Title One" is the title for "text one" , and "T2" is the title for "t2" . Q'
    assert icl.render("LaMP-5", ex, "Q") == ('"Title One" is a title for "text one" , and "T2" is a title for "t2" . '
                                             'Following the given patterns Q')
    assert icl.render("LaMP-7", ex, "Q") == ('"Title One" , and "T2"  are written by a person. '
                                             'Following the given patterns Q')
    assert icl.render("LaMP-4", ex[:1], "Generate a headline for the following article: A B") == \
        '"Title One" is the title for "text one" . Generate a headline for the following article: A B'
    assert icl.render("LaMP-7", [], "Q") == "Q"  # zero-shot: the input alone
    with pytest.raises(KeyError, match="LaMP-9"):
        icl.render("LaMP-9", ex, "Q")


def test_retrieval_query_drops_the_instruction():
    assert icl.retrieval_query("LaMP-4", "Generate a headline for the following article: Stocks fall. Why: rates") \
        == "Stocks fall. Why: rates"
    assert icl.retrieval_query("LaMP-5", "Generate a title for the following abstract of a paper: We study x: y") \
        == "We study x: y"
    assert icl.retrieval_query("LaMP-7", "Paraphrase the following tweet without any explanation before or after "
                                         "it: so tired: again") == "so tired: again"
    assert icl.retrieval_query("LaMP-4", "no keyword here") == "no keyword here"


def test_bm25_ignores_the_instruction_words():
    """An item that shares only the instruction's words must not outrank one that shares the content."""
    prof = [{"id": "instr", "source": "generate a headline for the following article", "output": "following article"},
            {"id": "content", "source": "the stock market crashed", "output": "markets down"}]
    q = {"query_id": "q", "task": "LaMP-4", "profile": prof,
         "prompt": "Generate a headline for the following article: stock market"}
    assert [e["id"] for e in icl.retrieve(q, 2, "bm25")] == ["content", "instr"]
    tweets = [{"id": "t1", "source": "", "output": "paraphrase tweet explanation"},
              {"id": "t2", "source": "", "output": "rainy monday again"}]
    q7 = {"query_id": "q7", "task": "LaMP-7", "profile": tweets,
          "prompt": "Paraphrase the following tweet without any explanation before or after it: monday rain"}
    assert icl.retrieve(q7, 1, "bm25")[0]["id"] == "t2"


def test_retrievers(tok):
    q = query(n_profile=5)
    assert icl.retrieve(q, 1, "bm25")[0]["id"] == "q1-p0"  # "stock market ... today" matches the query
    assert [e["id"] for e in icl.retrieve(q, 2, "recency")] == ["q1-p4", "q1-p3"]
    dated = dict(q, profile=[dict(e, date=f"2020-01-0{9 - i}") for i, e in enumerate(q["profile"])])
    assert [e["id"] for e in icl.retrieve(dated, 2, "recency")] == ["q1-p0", "q1-p1"]
    r1 = [e["id"] for e in icl.retrieve(q, 5, "random", seed=1)]
    assert r1 == [e["id"] for e in icl.retrieve(q, 5, "random", seed=1)]
    assert sorted(r1) == sorted(e["id"] for e in q["profile"])
    assert any(r1 != [e["id"] for e in icl.retrieve(q, 5, "random", seed=s)] for s in range(2, 6))
    with pytest.raises(ValueError, match="unknown retriever"):
        icl.retrieve(q, 2, "contriever")
    with pytest.raises(KeyError, match="profile"):
        icl.retrieve({"query_id": "x", "prompt": "p"}, 2)


def test_no_chat_template_plain_text(tok):
    plain = tiny_tokenizer()
    plain.chat_template = None
    p = icl.build_prompt(query(), plain, k=1, max_tokens=200)
    assert p.text == p.message + "\n" and p.n_examples == 1
