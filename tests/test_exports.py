"""The package's public names are exactly what ``chat.__all__`` promises."""

import chat


def test_all_names_exist_and_are_sorted() -> None:
    assert chat.__all__ == sorted(chat.__all__)
    missing = [name for name in chat.__all__ if not hasattr(chat, name)]
    assert missing == []


def test_every_public_error_is_exported() -> None:
    from chat import errors

    public = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.ChatError)
    }
    assert public <= set(chat.__all__)
