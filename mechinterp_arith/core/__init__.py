"""The core layer: everything about tasks, data and models that no analysis needs to know about.

Tasks and their token layout (``tasks``, ``positions``, ``labels``), operand sets (``data``,
``seeding``), models (``model``, ``plain_forward``), decoding and scoring (``decoding``,
``evaluate``), checkpoints and files (``checkpoint``, ``files``, ``importer``) and training
(``train_config``, ``train``, ``train_state``). Nothing here imports ``analysis``, ``report`` or
``cli`` (tests/unit/test_architecture.py checks it).
"""
