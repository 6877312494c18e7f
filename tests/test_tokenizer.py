from hypothesis import given, settings
from hypothesis import strategies as st

from dlm.tokenizer import SPECIAL_TOKENS, DLMTokenizer


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_unicode_text_round_trips(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_special_tokens_take_the_first_ids(tok):
    assert [tok.pad_id, tok.mask_id, tok.bos_id, tok.eos_id, tok.user_id, tok.assistant_id] == \
        list(range(len(SPECIAL_TOKENS)))


def test_special_token_text_in_user_input_stays_text(tok):
    ids = tok.encode("say <|mask|> and <|eos|>")
    assert tok.mask_id not in ids and tok.eos_id not in ids
    assert tok.decode(ids) == "say <|mask|> and <|eos|>"


def test_chat_template_marks_only_the_response(tok):
    messages = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi there"},
        {"role": "user", "content": "how are you"},
        {"role": "assistant", "content": "i am fine"},
    ]
    enc = tok.encode_chat(messages)
    assert enc.response_ids == tok.encode("i am fine") + [tok.eos_id]
    prompt = enc.prompt_ids
    assert prompt[0] == tok.bos_id and prompt[-1] == tok.assistant_id
    assert prompt.count(tok.user_id) == 2
    # the earlier assistant turn is closed by eos inside the prompt
    assert prompt.count(tok.eos_id) == 1
    assert tok.decode(prompt) == "hello hi there how are you"


def test_a_word_has_one_token_at_the_start_and_in_the_middle(tok):
    assert tok.encode("hello") == tok.encode("i said hello")[-len(tok.encode("hello")):]


def test_decode_response_stops_at_first_eos(tok):
    ids = tok.encode("hi there") + [tok.eos_id] + tok.encode("junk")
    assert tok.decode_response(ids) == "hi there"


def test_save_and_load_give_the_same_ids(tok, tmp_path):
    tok.save(tmp_path / "tokenizer.json")
    again = DLMTokenizer.load(tmp_path / "tokenizer.json")
    text = "how are you doing, friend? ünïcödé"
    assert again.encode(text) == tok.encode(text)
    assert again.vocab_size == tok.vocab_size


def test_rainbow_pads_join_after_the_vocabulary_and_end_a_reply(tok):
    from dlm.tokenizer import DLMTokenizer

    with_pads = tok.with_rainbow(3)
    assert with_pads.vocab_size == tok.vocab_size + 3
    assert with_pads.pad_cycle == list(range(tok.vocab_size, tok.vocab_size + 3))
    assert with_pads.encode("hello there") == tok.encode("hello there")
    assert with_pads.with_rainbow(3) is with_pads and tok.pad_cycle == []
    ids = with_pads.encode("hello") + [with_pads.pad_cycle[1]] + with_pads.encode("there")
    assert with_pads.decode_response(ids) == "hello"
    assert "<|pad_" not in with_pads.decode(ids)
    # saved and loaded, the cycle is found again
    round_trip = DLMTokenizer(type(tok.hf).from_str(with_pads.hf.to_str()))
    assert round_trip.pad_cycle == with_pads.pad_cycle
